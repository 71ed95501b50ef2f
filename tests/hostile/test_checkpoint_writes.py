"""Issue 17, case 3: a run killed while it writes `checkpoints/last` keeps the previous
complete file (Keras' ModelCheckpoint wrote into it in place)."""

import os

import keras
import pytest

from oanet_tf.inference.trained_model import LAST_WEIGHTS
from oanet_tf.training.trainer import train
from tests.hostile.conftest import split_overrides, write_scene
from tests.tiny_model import tiny_config


class _Killed(Exception):
    """Stands for the process dying halfway through a write."""


def test_a_write_cut_short_keeps_the_last_complete_checkpoint(tmp_path, monkeypatch):
    split = write_scene(tmp_path / "data")
    overrides = ["data.buckets=[]", "data.short_side=32", "data.max_side=32",
                 "train.batch_size=2", "train.steps_per_epoch=1", "train.eval_every_epochs=2",
                 *split_overrides(split, "train"), *split_overrides(split, "val")]
    model_dir = tmp_path / "model"
    train(tiny_config("train.epochs=1", *overrides), str(model_dir), verbose=0)
    last = model_dir / LAST_WEIGHTS
    complete = last.read_bytes()

    save_weights = keras.Model.save_weights

    def cut_short(model, path, *args, **kwargs):
        if os.path.basename(str(path)).endswith(os.path.basename(LAST_WEIGHTS)):
            with open(path, "wb") as f:
                f.write(b"half a weights file")
            raise _Killed
        return save_weights(model, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", cut_short)
    with pytest.raises(_Killed):  # the second epoch's checkpoint write dies
        train(tiny_config("train.epochs=2", *overrides), str(model_dir), verbose=0)
    assert last.read_bytes() == complete
    assert [name for name in os.listdir(last.parent) if "half" in name or ".tmp" in name] == []
