"""Issue 27, case 1: a model dir whose backup is gone (deleted, not synced, a partial copy)
but which holds a trained model used to be trained again from step 0 without a word, its
`checkpoints/last` overwritten. Now `train` resumes from `checkpoints/last` at the step the
file records, refuses (one line naming what is missing or damaged, the files left as they
were) where it cannot, and starts afresh over a model only when told to (overwrite)."""

import os
import shutil

import h5py
import pytest

from oanet_tf.errors import OANetError
from oanet_tf.training import backup
from oanet_tf.training.checkpoints import STEP_ATTRIBUTE, recorded_step
from oanet_tf.inference.trained_model import BEST_WEIGHTS, LAST_WEIGHTS
from oanet_tf.training.trainer import train
from tests.hostile.conftest import split_overrides, write_scene
from tests.tiny_model import tiny_config

STEPS = 2  # per epoch


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    """A model dir trained for one epoch, and the overrides of its config."""
    root = tmp_path_factory.mktemp("resume")
    split = write_scene(root / "data")
    overrides = ["data.buckets=[]", "data.short_side=32", "data.max_side=32",
                 "train.batch_size=2", f"train.steps_per_epoch={STEPS}",
                 *split_overrides(split, "train"), *split_overrides(split, "val")]
    train(tiny_config("train.epochs=1", *overrides), str(root / "model"), verbose=0)
    return root / "model", overrides


def _copy_without_backup(trained_dir, tmp_path):
    source, overrides = trained_dir
    model_dir = tmp_path / "model"
    shutil.copytree(source, model_dir, ignore=shutil.ignore_patterns("backup"))
    return model_dir, overrides


def _contents(model_dir) -> dict:
    return {os.path.relpath(os.path.join(d, f), model_dir):
            open(os.path.join(d, f), "rb").read()
            for d, _, files in os.walk(model_dir) for f in files}


def test_without_a_backup_the_run_resumes_from_last(trained_dir, tmp_path, capsys):
    model_dir, overrides = _copy_without_backup(trained_dir, tmp_path)
    last = model_dir / LAST_WEIGHTS
    run = train(tiny_config("train.epochs=2", *overrides), str(model_dir), verbose=0)
    assert run.history.epoch == [1]  # the first epoch was not trained again
    assert (f"resuming from {last} after step {STEPS} (epoch 2, step 0 of {STEPS}; "
            f"optimizer step {STEPS})") in capsys.readouterr().out
    assert recorded_step(str(last)) == 2 * STEPS
    assert backup.read_state(str(model_dir / "backup"))["batches"] == 2 * STEPS


@pytest.mark.parametrize("damage, named", [
    ("garbage", f"{LAST_WEIGHTS} cannot be read as a weights file"),
    ("missing", f"nor {LAST_WEIGHTS} to resume from"),
    ("no step", f"{LAST_WEIGHTS} records no step")])
def test_a_model_that_cannot_be_resumed_is_refused(trained_dir, tmp_path, damage, named):
    model_dir, overrides = _copy_without_backup(trained_dir, tmp_path)
    last = model_dir / LAST_WEIGHTS
    if damage == "garbage":
        last.write_bytes(b"half a weights file")
    elif damage == "missing":  # best (the epoch's val_loss is finite) is left
        assert (model_dir / BEST_WEIGHTS).exists()
        last.unlink()
    else:  # as `convert` writes it, or oanet_tf before it recorded steps
        with h5py.File(last, "a") as f:
            del f.attrs[STEP_ATTRIBUTE]
    before = _contents(model_dir)
    with pytest.raises(OANetError, match=f"holds a trained model .*{named}.*--overwrite"):
        train(tiny_config("train.epochs=2", *overrides), str(model_dir), verbose=0)
    assert _contents(model_dir) == before


def test_overwrite_starts_a_new_model(trained_dir, tmp_path, capsys):
    source, overrides = trained_dir
    model_dir = tmp_path / "model"
    shutil.copytree(source, model_dir)
    run = train(tiny_config("train.epochs=1", *overrides), str(model_dir), verbose=0,
                overwrite=True)
    assert f"--overwrite: deleted {model_dir / 'backup'}" in capsys.readouterr().out
    assert run.history.epoch == [0]
    assert recorded_step(str(model_dir / LAST_WEIGHTS)) == STEPS
    assert backup.read_state(str(model_dir / "backup"))["batches"] == STEPS
