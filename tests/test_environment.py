"""The environment block (oanet_tf/environment.py): the CPU's model and flags from a cpuinfo
file, the commit of a git checkout (and none, without running git, outside one), and the
model dir's environment.json, one entry per start, kept whole when it is not ours."""

import collections
import json
import os
import platform
import subprocess
import types

import pytest

from oanet_tf import environment
from oanet_tf.environment import (ENVIRONMENT_FILE, cpu_description, describe_environment,
                                  record_start, source_commit)
from oanet_tf.errors import OANetError

# Two processors of a cpuinfo file, trimmed; the second's lines must not be read.
CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512_bf16 amx_tile

processor\t: 1
model name\t: another CPU
flags\t\t: fpu amx_bf16
"""


def test_cpu_model_and_the_flags_that_change_rounding(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    assert cpu_description(str(path)) == {"model": "Intel(R) Xeon(R) Platinum 8480+",
                                          "flags": ["avx2", "avx512f", "avx512_bf16"]}


def test_an_unreadable_cpuinfo_gives_empty_values(tmp_path):
    assert cpu_description(str(tmp_path / "missing")) == {"model": "", "flags": []}
    assert cpu_description(str(tmp_path)) == {"model": "", "flags": []}  # a folder


def _git(root, *command):
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t",
                    *command], check=True, capture_output=True)


def test_the_commit_of_a_checkout_and_its_local_changes(tmp_path):
    _git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "commit", "-q", "-m", "first")
    head = (tmp_path / ".git" / "refs" / "heads" / "main").read_text().strip()
    assert source_commit(str(tmp_path)) == {"commit": head, "modified": False}
    (tmp_path / "new.py").write_text("")  # untracked: not a change of the code that ran
    assert source_commit(str(tmp_path)) == {"commit": head, "modified": False}
    (tmp_path / "a.py").write_text("x = 2\n")
    assert source_commit(str(tmp_path)) == {"commit": head, "modified": True}


def test_outside_a_checkout_git_is_not_run(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"git ran: {args}")

    monkeypatch.setattr(environment.subprocess, "run", refuse)
    assert source_commit(str(tmp_path)) is None


def test_a_git_that_fails_or_hangs_gives_no_commit(tmp_path, monkeypatch):
    (tmp_path / ".git").mkdir()
    for error in (subprocess.TimeoutExpired("git", 5), FileNotFoundError("git"),
                  subprocess.CalledProcessError(128, "git")):
        def fail(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(environment.subprocess, "run", fail)
        assert source_commit(str(tmp_path)) is None


def test_the_block_names_what_runs_here():
    import keras
    import numpy
    import tensorflow as tf

    block = describe_environment()
    assert block["tensorflow"] == tf.__version__ and block["keras"] == keras.__version__
    assert block["numpy"] == numpy.__version__
    assert block["python"] == platform.python_version()
    assert {"name": "/physical_device:CPU:0", "type": "CPU"} in block["devices"]
    assert json.loads(json.dumps(block)) == block  # JSON as it is


def test_each_start_adds_an_entry_and_a_foreign_file_is_kept(tmp_path):
    record_start(str(tmp_path), "convert")
    record_start(str(tmp_path), "train")
    starts = json.loads((tmp_path / ENVIRONMENT_FILE).read_text())["starts"]
    assert [s["command"] for s in starts] == ["convert", "train"]
    assert starts[0]["started"] <= starts[1]["started"]

    for foreign in ("{not json", '{"runs": []}', '{"starts": 3}', "[1, 2]"):
        (tmp_path / ENVIRONMENT_FILE).write_text(foreign)
        with pytest.raises(OANetError, match=f"{ENVIRONMENT_FILE}: not an environment file"):
            record_start(str(tmp_path), "train")
        assert (tmp_path / ENVIRONMENT_FILE).read_text() == foreign
    assert os.listdir(tmp_path) == [ENVIRONMENT_FILE]  # no temporary file left


def test_a_gpu_is_named_with_its_compute_capability():
    """The GPU branch on a machine without one: a stand-in for tf.config."""
    Device = collections.namedtuple("Device", "name device_type")
    devices = [Device("/physical_device:CPU:0", "CPU"), Device("/physical_device:GPU:0", "GPU")]
    details = {"device_name": "NVIDIA H100 80GB HBM3", "compute_capability": (9, 0)}
    config = types.SimpleNamespace(
        list_physical_devices=lambda: devices,
        experimental=types.SimpleNamespace(get_device_details=lambda d: dict(details)))
    assert environment._devices(types.SimpleNamespace(config=config)) == [
        {"name": "/physical_device:CPU:0", "type": "CPU"},
        {"name": "/physical_device:GPU:0", "type": "GPU", **details}]
