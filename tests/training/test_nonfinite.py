"""A NaN loss: the step is skipped (nothing changes) or training stops with the last backup
intact, by config."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.errors import NonFiniteLossError
from oanet_tf.modeling.builder import build_oanet
from oanet_tf.training import backup
from oanet_tf.training.nonfinite import NonFiniteLossGuard
from oanet_tf.training.schedule import build_optimizer
from tests.tiny_model import CATEGORIES, tiny_batch, tiny_config

NAN_STEP = 3  # 1-based: the third batch carries NaN pixels


def _batches(with_nan: bool):
    good = tiny_batch(2)
    bad = dict(good, images=tf.fill(good["images"].shape, float("nan")))
    batches = [good, good, bad, good] if with_nan else [good, good, good]
    dataset = tf.data.Dataset.from_tensors(batches[0])
    for batch in batches[1:]:
        dataset = dataset.concatenate(tf.data.Dataset.from_tensors(batch))
    return dataset, len(batches)


@pytest.fixture(scope="module")
def initial_weights():
    config = tiny_config()
    keras.utils.set_random_seed(0)
    return build_oanet(config.model, config.train, CATEGORIES).get_weights()


def _model(weights):
    config = tiny_config("train.warmup_steps=0")
    net = build_oanet(config.model, config.train, CATEGORIES)
    net.set_weights(weights)
    net.compile(optimizer=build_optimizer(config.train, 2), jit_compile=False)
    return net


def _assert_same_weights(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_nan_step_is_skipped_and_changes_nothing(initial_weights, capsys):
    skipped = _model(initial_weights)
    data, steps = _batches(with_nan=True)
    guard = NonFiniteLossGuard("skip")
    history = skipped.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False,
                          callbacks=[guard])
    assert history.history["nonfinite_steps"] == [1.0]
    assert guard.skipped == 1
    assert f"step {NAN_STEP}: non-finite loss, update skipped" in capsys.readouterr().err
    assert int(skipped.optimizer.iterations.numpy()) == steps - 1
    assert np.isfinite(history.history["loss"][0])
    # The same three good batches without the bad one: identical weights, batch-norm
    # statistics and optimizer state (the sampling is keyed by the optimizer step).
    clean = _model(initial_weights)
    data, steps = _batches(with_nan=False)
    clean.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    _assert_same_weights(skipped.get_weights(), clean.get_weights())
    _assert_same_weights([v.numpy() for v in skipped.optimizer.variables],
                         [v.numpy() for v in clean.optimizer.variables])


def test_nan_step_stops_training_and_keeps_the_last_backup(initial_weights, tmp_path):
    net = _model(initial_weights)
    data, steps = _batches(with_nan=True)
    backup_dir = str(tmp_path / "backup")
    callbacks = [NonFiniteLossGuard("stop", backup_dir=backup_dir),
                 backup.TrainingBackup(backup_dir, every_steps=1)]
    with pytest.raises(NonFiniteLossError, match=f"step {NAN_STEP}: the loss"):
        net.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False,
                callbacks=callbacks)
    state = backup.read_state(backup_dir)
    assert state["batches"] == NAN_STEP - 1
    assert sorted(os.listdir(backup_dir)) == sorted([backup.STATE_FILE, state["weights"]])
    restored = _model(initial_weights)
    assert backup.restore(restored, backup_dir) == NAN_STEP - 1
    weights = restored.get_weights()
    assert all(np.isfinite(w).all() for w in weights)
    _assert_same_weights(weights, net.get_weights())
    assert int(restored.optimizer.iterations.numpy()) == NAN_STEP - 1


def test_guard_rejects_unknown_mode():
    with pytest.raises(ValueError, match="skip"):
        NonFiniteLossGuard("ignore")
