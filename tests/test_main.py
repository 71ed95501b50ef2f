"""The command line's own options (oanet_tf/__main__.py): `--version`, and `--help` of the
top level and of every command without loading TensorFlow (a user reading the options of
`train` should not wait for it, nor see its start-up lines)."""

import argparse
import os
import re
import subprocess
import sys

from oanet_tf.__main__ import build_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("tensorflow", "keras", "torch")
SECONDS = 120
# In a fresh interpreter: each `COMMAND --help` in turn, then which heavy modules it loaded.
PROBE = """
import sys
from oanet_tf.__main__ import main
for argv in sys.argv[1:]:
    try:
        main(argv.split() + ["--help"])
    except SystemExit as stop:
        assert stop.code == 0, (argv, stop.code)
    loaded = [name for name in {heavy} if name in sys.modules]
    print(f"after {{argv or 'the top level'}}: {{loaded}}", file=sys.stderr)
    assert not loaded, (argv, loaded)
""".format(heavy=HEAVY)


def _fresh(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=SECONDS)


def _source_version() -> str:
    """The version as written in oanet_tf/__init__.py, read as text."""
    with open(os.path.join(ROOT, "oanet_tf", "__init__.py"), encoding="utf-8") as f:
        return re.search(r'^__version__ = "([^"]+)"$', f.read(), re.MULTILINE).group(1)


def _commands() -> list:
    parser, modules = build_parser()
    assert modules == {}  # no command chosen: no command module loaded
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(sub.choices)


def test_the_parser_lists_every_command_module():
    names = {name[:-3].replace("_", "-") for name in os.listdir(os.path.join(ROOT, "oanet_tf",
                                                                           "cli"))
             if name.endswith(".py") and name not in ("__init__.py", "common.py")}
    assert set(_commands()) == names


def test_version_of_the_module_and_of_python_m(tmp_path):
    done = _fresh("-m", "oanet_tf", "--version", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"oanet_tf {_source_version()}"


def test_help_of_the_top_level_and_every_command_loads_no_tensorflow():
    commands = _commands()
    done = _fresh("-c", PROBE, "", *commands)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(re.findall(r"^after .*: \[\]$", done.stderr, re.MULTILINE)) == len(commands) + 1
    for command in commands:  # each printed its own usage
        assert re.search(rf"^usage: python -m oanet_tf {command} \[-h\] \[--debug\]",
                         done.stdout, re.MULTILINE), command
