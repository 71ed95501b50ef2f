"""The built wheel declares the runtime dependencies (those of requirements.txt), the torch
and dev extras and the `oanet-tf` command, and holds the library and nothing else: every
module of oanet_tf/, none of the benchmark and research tooling beside it in the repository
(benchmarks/: the harness, the torchvision peer, the ablation runner; scripts/; tests/).

A full install of the wheel into a fresh venv downloads TensorFlow (~600 MB): too slow for CI
and impossible offline, so the wheel's metadata and file list are checked instead.
"""

import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_SECONDS = 300
# Left out of the copy the wheel is built from: caches anywhere, and the checkout's own git
# data, build output, runs and datasets at its top level (not the library's oanet_tf/data).
CACHES = ("__pycache__", ".pytest_cache")
CHECKOUT_ONLY = (".git", "build", "runs", "data", ".venv")
# The repository's tooling folders, and the names of the tooling modules in them.
TOOLING_FOLDERS = ("benchmarks", "harness", "scripts", "tests")
TOOLING_NAMES = ("benchmark", "harness", "torch_peer", "ablation", "device_check")


def _normalized(requirement: str) -> tuple:
    """'numpy<2,>=1.26' and 'numpy>=1.26,<2' -> ('numpy', ('<2', '>=1.26'))."""
    name, spec = re.match(r"([A-Za-z0-9_.\-]+)(.*)", requirement.replace(" ", "")).groups()
    return name.lower(), tuple(sorted(p for p in spec.split(",") if p))


def _requirements() -> set:
    names = set()
    with open(os.path.join(ROOT, "requirements.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                names.add(_normalized(line))
    return names


def _not_sources(folder, names) -> list:
    top = os.path.abspath(folder) == ROOT
    return [n for n in names if n in CACHES or n.endswith(".egg-info")
            or (top and n in CHECKOUT_ONLY)]


def _library_modules() -> set:
    """The wheel paths of every .py file under oanet_tf/ in the checkout."""
    found = set()
    for folder, dirs, files in os.walk(os.path.join(ROOT, "oanet_tf")):
        dirs[:] = [d for d in dirs if d not in CACHES]
        found |= {os.path.relpath(os.path.join(folder, f), ROOT).replace(os.sep, "/")
                  for f in files if f.endswith(".py")}
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """(METADATA, entry_points.txt, {file name: size}) of a wheel built from a copy of the whole
    checkout, tooling included (the build leaves its build/ and egg-info there, not in the
    checkout)."""
    source = tmp_path_factory.mktemp("source") / "oanet_tf_repo"
    shutil.copytree(ROOT, source, ignore=_not_sources)
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(out), str(source)],
                          capture_output=True, text=True, timeout=BUILD_SECONDS)
    if done.returncode != 0 and "No module named" in done.stderr:
        pytest.skip(f"cannot build a wheel here: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr
    (built,) = [p for p in os.listdir(out) if p.endswith(".whl")]
    with zipfile.ZipFile(out / built) as archive:
        names = archive.namelist()
        read = lambda suffix: next(archive.read(n).decode() for n in names  # noqa
                                   if n.endswith(suffix))
        sizes = {info.filename: info.file_size for info in archive.infolist()}
        return read(".dist-info/METADATA"), read(".dist-info/entry_points.txt"), sizes


def test_wheel_declares_requirements_and_extras(wheel):
    metadata, entry_points, _ = wheel
    requires = re.findall(r"^Requires-Dist: (.+)$", metadata, re.MULTILINE)
    runtime = {_normalized(r) for r in requires if "extra ==" not in r}
    assert runtime == _requirements()
    assert ("tensorflow", ("<3", ">=2.21")) in runtime
    assert not any(name == "panopticapi-lite" for name, _ in runtime)  # tests only: dev
    extras = set(re.findall(r"^Provides-Extra: (.+)$", metadata, re.MULTILINE))
    assert {"torch", "dev"} <= extras
    assert any(r.startswith("torch") and 'extra == "torch"' in r for r in requires)
    assert any(r.startswith("panopticapi-lite") and 'extra == "dev"' in r for r in requires)
    assert "oanet-tf = oanet_tf.__main__:program" in entry_points


def test_wheel_holds_the_library_and_no_tooling(wheel):
    _, _, sizes = wheel
    names = set(sizes)
    assert os.path.isdir(os.path.join(ROOT, "benchmarks", "harness"))  # there to leave out
    modules = {n for n in names if n.endswith(".py")}
    assert modules == _library_modules()
    assert {"oanet_tf/__main__.py", "oanet_tf/cli/convert_tfrecords.py",
            "oanet_tf/modeling/builder.py"} <= modules
    top_level = {n.split("/")[0] for n in names}
    assert not top_level & set(TOOLING_FOLDERS)
    assert [n for n in names if any(t in n.rsplit("/", 1)[-1] for t in TOOLING_NAMES)] == []


def test_wheel_ships_the_preset_data(wheel):
    """Every file of oanet_tf/preset_data (the synthetic_demo weights included), whole."""
    sizes = wheel[2]
    data = os.path.join(ROOT, "oanet_tf", "preset_data")
    shipped = {os.path.relpath(os.path.join(folder, name), ROOT).replace(os.sep, "/"):
               os.path.getsize(os.path.join(folder, name))
               for folder, _, files in os.walk(data) for name in files}
    assert "oanet_tf/preset_data/synthetic_demo/checkpoints/last.weights.h5" in shipped
    assert {name: sizes.get(name) for name in shipped} == shipped
