"""WeightsCheckpoints: `last` every N steps and at epoch ends, `best` at the lowest val_loss
(fit's at epoch ends, its own validation pass at the steps between), the epoch's training
means untouched by that pass, the best kept across a resume, only the chief writing."""

import json
import os

import numpy as np
import pytest

from oanet_tf.errors import OANetError
from oanet_tf.training.checkpoints import WeightsCheckpoints, recorded_step
from oanet_tf.inference.trained_model import BEST_RECORD, BEST_WEIGHTS, LAST_WEIGHTS
from tests.training.scripted_model import (TOTAL_FACTOR, VAL_TARGET, scripted_data,
                                           scripted_model)

EPOCHS, STEPS, EVERY = 2, 5, 2
VALUES = [1.0, 3.0, 2.0, 8.0, 6.0, 5.0, 7.0, 9.0, 4.0, 2.0]
VALIDATION = scripted_data([0.0])  # one validation batch; its loss depends on the steps only


def steps_in(path) -> float:
    """The scripted model's step count stored in a weights file."""
    model = scripted_model()
    model.load_weights(path)
    return float(model.steps.numpy())


def fit(model, callback, epochs=EPOCHS):
    return model.fit(scripted_data(VALUES), epochs=epochs, steps_per_epoch=STEPS, verbose=0,
                     validation_data=VALIDATION, callbacks=[callback]).history


def test_last_and_best_every_n_steps_and_at_epoch_ends(tmp_path):
    model_dir = str(tmp_path)
    saved = []  # (step, val_loss or None) of each write of `last`
    model = scripted_model()
    callback = WeightsCheckpoints(model_dir, EVERY, (VALIDATION, None))
    save = callback._save
    callback._save = lambda val_loss: (saved.append((callback.step, val_loss)),
                                       save(val_loss))
    history = fit(model, callback)
    # Steps 2, 4, 6, 8 by the callback's own pass; 5 and 10 (epoch ends) by fit's validation.
    val_loss = {step: (step - VAL_TARGET) ** 2 for step in (2, 4, 5, 6, 8, 10)}
    assert saved == sorted(val_loss.items())
    last = os.path.join(model_dir, LAST_WEIGHTS)
    assert steps_in(last) == EPOCHS * STEPS
    assert recorded_step(last) == EPOCHS * STEPS  # the file names its step (resume)
    best_step = min(val_loss, key=val_loss.get)
    assert steps_in(os.path.join(model_dir, BEST_WEIGHTS)) == best_step
    with open(os.path.join(model_dir, BEST_RECORD)) as f:
        assert json.load(f) == {"val_loss": val_loss[best_step], "step": best_step}
    # The passes at steps 2, 4, 6 and 8 left the epochs' training means as they were.
    epochs = np.reshape(VALUES, (EPOCHS, STEPS))
    np.testing.assert_allclose(history["loss"], TOTAL_FACTOR * epochs.mean(axis=1), rtol=1e-6)
    assert history["val_loss"] == [val_loss[5], val_loss[10]]
    assert not [name for name in os.listdir(os.path.join(model_dir, "checkpoints"))
                if name.startswith(".tmp")]

    # Resumed after step 10: the best so far (step 4) still stands against step 12's 64.
    resumed = WeightsCheckpoints(model_dir, EVERY, (VALIDATION, None), steps_done=EPOCHS * STEPS)
    assert resumed.best == val_loss[best_step]
    fit(model, resumed, epochs=1)
    assert steps_in(os.path.join(model_dir, BEST_WEIGHTS)) == best_step
    assert steps_in(last) == recorded_step(last) == (EPOCHS + 1) * STEPS


def test_only_the_writer_writes(tmp_path):
    fit(scripted_model(), WeightsCheckpoints(str(tmp_path), EVERY, (VALIDATION, None),
                                             write=False))
    assert os.listdir(tmp_path) == []


def test_a_bad_best_record_is_named(tmp_path):
    path = tmp_path / BEST_RECORD
    path.parent.mkdir()
    path.write_text('{"loss": 1}')
    with pytest.raises(OANetError, match="best.json: not a best checkpoint record"):
        WeightsCheckpoints(str(tmp_path), EVERY, (VALIDATION, None))
