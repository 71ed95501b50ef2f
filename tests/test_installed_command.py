"""The `oanet-tf` command as a user gets it: the wheel installed into a fresh venv, run from an
empty folder. An editable install (and the test suite, which imports the source tree) hides
what only an installed copy shows: `import importlib` without `importlib.util` worked there
because the editable finder had already imported it, and crashed every installed call.

The venv is bare (no system site-packages, no editable finder, no dependencies): what
`--version` and `--help` need must then come from the wheel and the standard library alone.
A second venv sees the test environment's packages (TensorFlow) with the wheel installed over
them, the way a user installs it: there a shipped config trains by name from an empty folder.
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
# One step of the synthetic config on the 4 + 2 images made below, scored on one val image.
SHORT_TRAINING = ("train.epochs=1", "train.steps_per_epoch=1", "train.batch_size=2",
                  "train.reference_batch_size=2", "train.warmup_steps=0",
                  "data.synthetic_train=4", "data.synthetic_val=2", "eval.max_images=1")


def _run(*command, cwd=None):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(list(command), capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=SECONDS)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from a copy of the sources (the build leaves its build/ and egg-info
    there, not in the checkout)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), source)
    for folder in ("oanet_tf", "configs"):
        shutil.copytree(os.path.join(ROOT, folder), source / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    done = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                "-q", "-w", str(out), str(source))
    if done.returncode != 0 and "No module named" in done.stderr:
        pytest.skip(f"cannot build a wheel here: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr
    (built,) = [p for p in os.listdir(out) if p.endswith(".whl")]
    return out / built


def _venv_with(wheel, env_dir, system_site_packages: bool):
    """The bin folder of a new venv at `env_dir` with `wheel` installed (no dependencies:
    with system site-packages they are the test environment's)."""
    venv.create(env_dir, with_pip=False, symlinks=True, system_site_packages=system_site_packages)
    python = env_dir / "bin" / "python"
    # --ignore-installed: an oanet_tf of the same version seen in the system site-packages
    # (an editable install of a checkout) must not stand in for the wheel.
    done = _run(sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                "--no-index", "--ignore-installed", "-q", str(wheel))
    assert done.returncode == 0, done.stderr
    return env_dir / "bin"


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """(the bare venv's bin folder, the wheel's version)."""
    return _venv_with(wheel, tmp_path_factory.mktemp("venv"), False), wheel.name.split("-")[1]


@pytest.fixture(scope="module")
def installed_over_tensorflow(wheel, tmp_path_factory):
    """The bin folder of a venv that sees the test environment's TensorFlow, with the wheel
    installed in it; its own copy, not a checkout (an editable finder there comes after the
    venv's site-packages), is what runs."""
    bin_dir = _venv_with(wheel, tmp_path_factory.mktemp("venv_tf"), True)
    code = ("import oanet_tf.cli.common; from oanet_tf import config; "
            "print(oanet_tf.__file__); print(config.shipped_configs_dir())")
    done = _run(str(bin_dir / "python"), "-c", code, cwd=bin_dir.parent)
    assert done.returncode == 0, done.stderr
    package, configs = done.stdout.split()
    assert package.startswith(str(bin_dir.parent)), package
    assert configs == os.path.join(os.path.dirname(package), "configs"), configs
    return bin_dir


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


def test_the_installed_demo_names_its_shipped_config(installed_over_tensorflow, tmp_path):
    done = _run(str(installed_over_tensorflow / "oanet-tf"), "demo", "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "(coco_r101, coco_r50, coco_r50_torchvision, synthetic)" in " ".join(done.stdout.split())
    assert "(default: synthetic)" in done.stdout


@pytest.mark.slow
def test_a_shipped_config_trains_by_name_from_an_empty_folder(installed_over_tensorflow,
                                                             tmp_path):
    command = str(installed_over_tensorflow / "oanet-tf")
    done = _run(command, "make-synthetic", "--out", "data/synthetic", "--train", "4", "--val",
                "2", "--seed", "0", "--size", "128x128", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = _run(command, "train", "--config", "synthetic", "--model-dir", "run",
                *[arg for setting in SHORT_TRAINING for arg in ("--set", setting)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "run"
    assert (run / "checkpoints" / "last.weights.h5").is_file()
    saved = (run / "config.yaml").read_text()
    assert "_base_" not in saved and "small_resnet" in saved  # the shipped synthetic, resolved
