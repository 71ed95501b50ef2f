"""Issue 27, case 3: two `train` processes on one --model-dir used to both run to the end,
writing event files and checkpoints over each other. Now the first holds the model dir's
lock (so does `convert`); a second is refused with one line naming the holder's pid and host;
a lock whose process died blocks nobody."""

import os
import signal
import socket
import subprocess
import sys

from oanet_tf.__main__ import USER_ERROR, main
from oanet_tf.dir_lock import LOCK_FILE, exclusive_writer
from tests.hostile.conftest import REPO, TIMEOUT, TrainProcess, write_scene
from tests.tiny_model import SYNTHETIC_CONFIG


def _holds_lock(model_dir, process) -> bool:
    path = model_dir / LOCK_FILE
    return path.exists() and f"pid {process.pid} " in path.read_text()


def test_a_second_train_is_refused_and_a_dead_holder_blocks_nobody(synthetic_data, tmp_path):
    model_dir = tmp_path / "model"
    first = TrainProcess(model_dir, synthetic_data, steps=10000)
    try:
        first.wait_until(lambda: _holds_lock(model_dir, first.process), "the lock taken")
        second = subprocess.run(
            [sys.executable, "-m", "oanet_tf", "train", "--config", SYNTHETIC_CONFIG,
             "--model-dir", str(model_dir), "--set", f"data.synthetic_dir={synthetic_data}"],
            capture_output=True, text=True, cwd=REPO, timeout=TIMEOUT,
            env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"})
        errors = [line for line in second.stderr.splitlines() if line.startswith("error")]
        assert second.returncode == USER_ERROR and len(errors) == 1, second.stderr[-3000:]
        assert (f"{model_dir} is in use: train pid {first.process.pid} on host "
                f"{socket.gethostname()} holds {model_dir / LOCK_FILE}") in errors[0]
        assert first.process.poll() is None  # the first goes on
    finally:
        first.process.send_signal(signal.SIGKILL)  # no clean-up: its lock file stays
        first.finish()
    assert _holds_lock(model_dir, first.process)
    with exclusive_writer(str(model_dir), "test"):
        assert f"test pid {os.getpid()} " in (model_dir / LOCK_FILE).read_text()
    assert not (model_dir / LOCK_FILE).exists()


def test_convert_is_refused_while_the_model_dir_is_locked(tmp_path, capsys):
    split = write_scene(tmp_path / "data", count=1)
    model_dir = tmp_path / "converted"
    with exclusive_writer(str(model_dir), "train"):
        code = main(["convert", "torchvision", str(tmp_path / "weights.npz"), "--config",
                     SYNTHETIC_CONFIG, "--categories", split.panoptic_json,
                     "--model-dir", str(model_dir)])
        assert code == USER_ERROR
        assert (f"error: {model_dir} is in use: train pid {os.getpid()} on host "
                f"{socket.gethostname()}") in capsys.readouterr().err
    assert not model_dir.exists()  # the lock's folder goes with the lock
