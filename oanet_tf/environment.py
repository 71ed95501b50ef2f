"""What made a model: the package versions, the source commit, Python, the CPU with the
instruction sets that change float rounding, and the devices.

The same config and seed train a different model on a CPU with AVX-512 than on one without
(oneDNN picks other kernels, which round differently), so a model dir and an evaluation
record this block beside their results. TensorFlow is imported only when the block is built.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess

from oanet_tf import __version__
from oanet_tf.errors import OANetError
from oanet_tf.fileio import read_json, write_json

ENVIRONMENT_FILE = "environment.json"  # in a model dir: one entry per start of a command
# The x86 instruction sets whose presence changes which kernels oneDNN runs, and so the
# rounding of a training run (avx512f), or whether bfloat16 is computed natively.
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
CPUINFO = "/proc/cpuinfo"
GIT_SECONDS = 5  # a commit that takes longer to read is left out, not waited for


def cpu_description(cpuinfo: str = CPUINFO) -> dict:
    """{"model": the first CPU's model name, "flags": those of ISA_FLAGS it has}; empty
    values where `cpuinfo` is unreadable (not Linux) or lacks them."""
    model, flags = "", set()
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    return {"model": model, "flags": [flag for flag in ISA_FLAGS if flag in flags]}


def source_commit(root: str | None = None) -> dict | None:
    """{"commit", "modified"} of the git checkout the package runs from (`root`: the folder
    holding the package), or None: installed from a wheel, no git, or git too slow."""
    if root is None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.exists(os.path.join(root, ".git")):  # a folder, or a file in a worktree
        return None
    try:
        head = _git(root, "rev-parse", "HEAD")
        changes = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "modified": bool(changes)}


def _git(root: str, *command: str) -> str:
    return subprocess.run(["git", "-C", root, *command], capture_output=True, text=True,
                          timeout=GIT_SECONDS, check=True).stdout.strip()


def _devices(tf) -> list:
    """The physical devices; a GPU's name and compute capability where TensorFlow has them."""
    devices = []
    for device in tf.config.list_physical_devices():
        entry = {"name": device.name, "type": device.device_type}
        if device.device_type == "GPU":
            details = tf.config.experimental.get_device_details(device)
            entry.update({k: details[k] for k in ("device_name", "compute_capability")
                          if k in details})
        devices.append(entry)
    return devices


def describe_environment() -> dict:
    """The block every model dir and evaluation records (imports TensorFlow)."""
    import keras
    import numpy
    import tensorflow as tf

    return {
        "oanet_tf": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git": source_commit(),
        "cpu": cpu_description(),
        "devices": _devices(tf),
    }


def record_start(model_dir: str, command: str) -> dict:
    """Append this start of `command` (train, convert) and its environment to the model dir's
    ENVIRONMENT_FILE, rewritten whole (temp file, then rename). A resumed run adds an entry,
    so a model trained partly on one machine and partly on another shows both."""
    path = os.path.join(model_dir, ENVIRONMENT_FILE)
    starts = []
    if os.path.exists(path):
        try:
            starts = read_json(path, "environment file")["starts"]
            if not isinstance(starts, list):
                raise TypeError("its starts are not a list")
        except (ValueError, TypeError, KeyError) as err:
            raise OANetError(f"{path}: not an environment file of oanet_tf ({err}); move it "
                             f"away to start a new one") from None
    entry = {"command": command,
             "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
                 timespec="seconds"),
             **describe_environment()}
    write_json(path, {"starts": starts + [entry]}, indent=1)
    return entry
