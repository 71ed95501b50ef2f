"""Issue 27, item 6: a full disk (or another OS error) while writing a checkpoint, a backup, an
export or predictions is one line naming the file and the error, exit code 2; the files
written before stay as they were and no temporary is left. `train` crashed inside h5py (exit
139) after a raw `errno 28` traceback, `export` said "internal error, ResourceExhaustedError",
`predict` named no file.

The disks are real: a 16 MB tmpfs (mounting one needs root: skipped otherwise), filled to a
few KB before the second run; and a file size limit (RLIMIT_FSIZE), which fails a write with
EFBIG anywhere."""

import contextlib
import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from oanet_tf.config import save_config
from oanet_tf.fileio import atomic_open, write_json
from tests.hostile.conftest import split_overrides, write_scene
from tests.tiny_model import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT_S = 300
DISK_SIZE = "16m"
NO_SPACE = os.strerror(28)  # ENOSPC: "No space left on device"
TOO_LARGE = os.strerror(27)  # EFBIG: "File too large"


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs",
                       str(mount)], capture_output=True).returncode:
        pytest.skip("mount -t tmpfs failed")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(disk, leave_bytes: int):
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(shutil.disk_usage(disk).free - leave_bytes, 0))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "oanet_tf", *args], cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=REPO), capture_output=True,
                          text=True, timeout=TIMEOUT_S)


def _one_error(done) -> str:
    """The one error line of a run that failed as a user error (not a crash)."""
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 2 and len(errors) == 1, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr
    return errors[0]


def _digests(folder) -> dict:
    """Relative path -> SHA-1 of every file under `folder`."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                found[os.path.relpath(os.path.join(root, name), folder)] = \
                    hashlib.sha1(f.read()).hexdigest()
    return found


def _temporaries(folder) -> list:
    return [os.path.join(root, name) for root, folders, files in os.walk(folder)
            for name in folders + files if name.startswith((".tmp-", ".old-"))]


def test_training_on_a_full_disk_stops_with_one_line(small_disk, tmp_path):
    split = write_scene(tmp_path / "data")
    config = tmp_path / "tiny.yaml"
    save_config(tiny_config("data.buckets=[]", "data.short_side=32", "data.max_side=32",
                            "train.batch_size=2", "train.steps_per_epoch=1",
                            "train.eval_every_epochs=10", *split_overrides(split, "train"),
                            *split_overrides(split, "val")), str(config))
    model_dir = small_disk / "model"
    train = ["train", "--config", str(config), "--model-dir", str(model_dir)]
    first = _cli(*train, "--set", "train.epochs=1")
    assert first.returncode == 0, first.stderr[-3000:]
    weights = {folder: _digests(model_dir / folder) for folder in ("checkpoints", "backup")}
    _fill(small_disk, 32 << 10)
    error = _one_error(_cli(*train, "--set", "train.epochs=2"))
    assert error.startswith(f"error: {model_dir}{os.sep}") and NO_SPACE in error, error
    assert {folder: _digests(model_dir / folder) for folder in weights} == weights
    assert _temporaries(model_dir) == []


def test_an_export_on_a_full_disk_keeps_the_previous_one(small_disk, scene_model_dir):
    export_dir = small_disk / "export"
    export = ["export", "--model-dir", scene_model_dir[0], "--export-dir", str(export_dir)]
    assert _cli(*export).returncode == 0
    previous = _digests(export_dir)
    _fill(small_disk, 64 << 10)
    error = _one_error(_cli(*export))
    assert error.startswith(f"error: {export_dir / '1'}: ") and NO_SPACE in error, error
    assert _digests(export_dir) == previous and _temporaries(small_disk) == []


def test_predictions_on_a_full_disk_name_the_file_and_keep_the_previous_set(
        small_disk, scene_model_dir, tmp_path):
    images = []
    for name, seed in (("a.png", 1), ("b.png", 2)):
        images.append(str(tmp_path / name))
        pixels = np.random.default_rng(seed).integers(0, 255, (96, 128, 3), np.uint8)
        Image.fromarray(pixels).save(images[-1])
    out = small_disk / "out"
    predict = ["predict", *images, "--model-dir", scene_model_dir[0], "--out", str(out)]
    assert _cli(*predict).returncode == 0
    previous = _digests(out)
    _fill(small_disk, 8 << 10)
    error = _one_error(_cli(*predict))
    assert error.startswith(f"error: {out}{os.sep}") and error.endswith(NO_SPACE), error
    assert _digests(out) == previous and _temporaries(small_disk) == []


@contextlib.contextmanager
def _file_size_limit(size: int):
    """Writes past `size` bytes fail with EFBIG (SIGXFSZ ignored) while the block runs."""
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, limits[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)


def test_a_write_past_the_file_size_limit_names_the_file(tmp_path):
    target = tmp_path / "predictions.json"
    target.write_text('{"old": true}')
    with pytest.raises(OSError) as info, _file_size_limit(4096):
        write_json(str(target), {"ids": list(range(10000))})
    assert info.value.filename == str(target) and info.value.strerror == TOO_LARGE
    with pytest.raises(OSError) as info, _file_size_limit(4096):
        with atomic_open(str(tmp_path / "x.png"), "wb") as f:
            f.write(b"\0" * 10000)
    assert info.value.filename == str(tmp_path / "x.png")
    assert target.read_text() == '{"old": true}' and os.listdir(tmp_path) == [target.name]
