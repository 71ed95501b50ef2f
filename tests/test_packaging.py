"""The built wheel declares the runtime dependencies (those of requirements.txt), the torch
and dev extras and the `oanet-tf` command.

A full install of the wheel into a fresh venv downloads TensorFlow (~600 MB): too slow for CI
and impossible offline, so the wheel's metadata is checked instead.
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


@pytest.fixture(scope="module")
def wheel_metadata(tmp_path_factory):
    """(METADATA, entry_points.txt) of a wheel built from a copy of the sources (the build
    leaves its build/ and egg-info there, not in the checkout)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), source)
    shutil.copytree(os.path.join(ROOT, "oanet_tf"), source / "oanet_tf",
                    ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(out), str(source)],
                          capture_output=True, text=True, timeout=BUILD_SECONDS)
    if done.returncode != 0 and "No module named" in done.stderr:
        pytest.skip(f"cannot build a wheel here: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr
    (wheel,) = [p for p in os.listdir(out) if p.endswith(".whl")]
    with zipfile.ZipFile(out / wheel) as archive:
        read = lambda suffix: next(archive.read(n).decode() for n in archive.namelist()  # noqa
                                   if n.endswith(suffix))
        return read(".dist-info/METADATA"), read(".dist-info/entry_points.txt")


def test_wheel_declares_requirements_and_extras(wheel_metadata):
    metadata, entry_points = wheel_metadata
    requires = re.findall(r"^Requires-Dist: (.+)$", metadata, re.MULTILINE)
    runtime = {_normalized(r) for r in requires if "extra ==" not in r}
    assert runtime == _requirements()
    assert ("tensorflow", ("<3", ">=2.21")) in runtime
    assert not any(name == "panopticapi-lite" for name, _ in runtime)  # tests only: dev
    extras = set(re.findall(r"^Provides-Extra: (.+)$", metadata, re.MULTILINE))
    assert {"torch", "dev"} <= extras
    assert any(r.startswith("torch") and 'extra == "torch"' in r for r in requires)
    assert any(r.startswith("panopticapi-lite") and 'extra == "dev"' in r for r in requires)
    assert "oanet-tf = oanet_tf.__main__:main" in entry_points
