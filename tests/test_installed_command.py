"""The `oanet-tf` command as a user gets it: the wheel installed into a fresh venv, run from an
empty folder. An editable install (and the test suite, which imports the source tree) hides
what only an installed copy shows: `import importlib` without `importlib.util` worked there
because the editable finder had already imported it, and crashed every installed call.

The venv is bare (no system site-packages, no editable finder, no dependencies): what
`--version` and `--help` need must then come from the wheel and the standard library alone.
"""

import os
import re
import shutil
import subprocess
import sys
import venv

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECONDS = 300


def _run(*command, cwd=None):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(list(command), capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=SECONDS)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the venv's bin folder, the wheel's version) after installing a wheel built from a copy
    of the sources (the build leaves its build/ and egg-info there, not in the checkout)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), source)
    shutil.copytree(os.path.join(ROOT, "oanet_tf"), source / "oanet_tf",
                    ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    done = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                "-q", "-w", str(out), str(source))
    if done.returncode != 0 and "No module named" in done.stderr:
        pytest.skip(f"cannot build a wheel here: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr
    (wheel,) = [p for p in os.listdir(out) if p.endswith(".whl")]
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=False, symlinks=True)
    python = env_dir / "bin" / "python"
    done = _run(sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                "--no-index", "-q", str(out / wheel))
    assert done.returncode == 0, done.stderr
    return env_dir / "bin", wheel.split("-")[1]


def test_the_installed_command_prints_its_version(installed, tmp_path):
    bin_dir, version = installed
    for command in ([str(bin_dir / "oanet-tf")], [str(bin_dir / "python"), "-m", "oanet_tf"]):
        done = _run(*command, "--version", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"oanet_tf {version}"


def test_the_installed_command_lists_its_commands(installed, tmp_path):
    bin_dir, _ = installed
    done = _run(str(bin_dir / "oanet-tf"), "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for command in ("train", "evaluate", "export", "predict", "convert", "pq"):
        assert re.search(rf"^\s+{command}\s", done.stdout, re.MULTILINE), command
    # the venv's own copy ran, not the source tree
    done = _run(str(bin_dir / "python"), "-c", "import oanet_tf; print(oanet_tf.__file__)",
                cwd=tmp_path)
    assert done.stdout.strip().startswith(str(bin_dir.parent)), done.stdout
