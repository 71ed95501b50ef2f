"""Issue 17, cases 7 and 9: a folder of outputs (an export's version folder, predict's --out)
is replaced as a whole, in one step, readable by others; what a killed run left is deleted
by the next one (also a backup's temporary weights)."""

import os
import stat
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from oanet_tf.__main__ import main
from oanet_tf.cli.predict import PREDICTIONS_JSON
from oanet_tf import fileio
from oanet_tf.training import backup

UMASK = 0o022


def _dead_pid():
    """The id of a process that has exited."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def _leftover(directory, prefix, name, pid):
    return os.path.join(directory, f"{prefix}{pid}-{'0' * 12}-{name}")


def test_a_staged_folder_is_readable_by_others(tmp_path):
    old = os.umask(UMASK)
    try:
        with fileio.staged_directory(str(tmp_path / "1")) as staging:
            open(os.path.join(staging, "saved_model.pb"), "wb").close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "1").st_mode) == 0o755


def test_an_existing_folder_is_never_missing_while_replaced(tmp_path, monkeypatch):
    target = tmp_path / "1"
    target.mkdir()
    (target / "old.pb").write_text("old")
    source = tmp_path / "new"
    source.mkdir()
    (source / "new.pb").write_text("new")
    gaps = []
    rename = os.rename

    def watched(src, dst):
        rename(src, dst)
        gaps.append(not target.exists())

    monkeypatch.setattr(os, "rename", watched)
    fileio.replace_directory(str(source), str(target))
    assert os.listdir(target) == ["new.pb"] and not source.exists()
    assert not any(gaps)


def test_leftovers_of_a_killed_run_are_deleted_by_the_next(tmp_path):
    pid = _dead_pid()
    stale = [_leftover(tmp_path, ".tmp-", "1", pid), _leftover(tmp_path, ".old-", "1", pid)]
    for path in stale:
        os.makedirs(path)
    running = _leftover(tmp_path, ".tmp-", "1", os.getpid())  # a live export's staging
    os.makedirs(running)
    with fileio.staged_directory(str(tmp_path / "1")):
        pass
    assert sorted(os.listdir(tmp_path)) == sorted(["1", os.path.basename(running)])


def test_a_backups_temporary_weights_are_deleted_at_the_next_run(tmp_path):
    stale = _leftover(tmp_path, ".tmp-", "step-000000010.weights.h5", _dead_pid())
    with open(stale, "wb") as f:
        f.write(b"half written")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    assert backup.restore(model, str(tmp_path)) == 0
    assert os.listdir(tmp_path) == []


def test_a_malformed_backup_state_is_one_clear_error(tmp_path):
    (tmp_path / backup.STATE_FILE).write_text("{not json")
    with pytest.raises(backup.OANetError, match="not valid JSON"):
        backup.read_state(str(tmp_path))


def test_predict_keeps_the_previous_set_when_an_image_fails(tmp_path, scene_model_dir, capsys):
    """Two images, one a batch: the first is predicted, the second is not an image. The
    previous outputs stay exactly as they were, and the message names the bad file."""
    out = tmp_path / "out"
    (out / "panoptic").mkdir(parents=True)
    (out / PREDICTIONS_JSON).write_text('{"old": true}')
    (out / "panoptic" / "old.png").write_bytes(b"old png")
    good, bad = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(np.full((24, 32, 3), 90, np.uint8)).save(good)
    bad.write_bytes(b"not an image at all")
    code = main(["predict", str(good), str(bad), "--model-dir", scene_model_dir[0],
                 "--out", str(out), "--batch-size", "1", "--no-overlays"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(err) == 1
    assert str(bad) in err[0] and "is not a decodable JPEG, PNG, GIF or BMP image" in err[0]
    assert sorted(os.listdir(out)) == ["panoptic", PREDICTIONS_JSON]
    assert os.listdir(out / "panoptic") == ["old.png"]
    assert (out / PREDICTIONS_JSON).read_text() == '{"old": true}'
    assert sorted(os.listdir(tmp_path)) == ["a.png", "b.png", "out"]
