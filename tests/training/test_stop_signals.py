"""StopRequest and StopAtSignal: a signal during a step stops the run at that step's end,
after a backup of it; the first signal is caught once, the next acts as without it."""

import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.errors import TrainingStopped
from oanet_tf.training import backup
from oanet_tf.training.stop_signals import StopAtSignal, StopRequest

SIGNAL_IN_STEP = 3  # 1-based: the step during which SIGTERM arrives


class _SignalDuring(keras.callbacks.Callback):
    """Sends SIGTERM to this process as step `step` begins."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_begin(self, batch, logs=None):
        if batch + 1 == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_signal_stops_after_its_step_with_a_backup_of_it(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x, y = np.ones((20, 3), np.float32), np.zeros((20, 2), np.float32)
    backups = backup.TrainingBackup(str(tmp_path), every_steps=100)
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest() as request, pytest.raises(TrainingStopped) as stopped:
        model.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=[
            _SignalDuring(SIGNAL_IN_STEP), backups,
            StopAtSignal(request, backups, tf.distribute.get_strategy())])
    assert stopped.value.step == SIGNAL_IN_STEP
    assert str(stopped.value).startswith(f"stopped by SIGTERM after step {SIGNAL_IN_STEP}: ")
    assert backup.read_state(str(tmp_path))["batches"] == SIGNAL_IN_STEP
    assert int(model.optimizer.iterations) == SIGNAL_IN_STEP
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_second_signal_acts_as_without_the_request():
    """The first SIGINT is recorded; the handler in place before comes back for the next."""
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest() as request:
        assert signal.getsignal(signal.SIGINT) != signal.default_int_handler
        os.kill(os.getpid(), signal.SIGINT)
        assert request.signal_name == "SIGINT"
        assert signal.getsignal(signal.SIGINT) == signal.default_int_handler
        assert signal.getsignal(signal.SIGTERM) == before
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) == signal.default_int_handler
