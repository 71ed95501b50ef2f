"""`checkpoints/last` and `checkpoints/best` during training: at every epoch end and every
`train.checkpoint_every_steps` steps.

`last` holds the latest weights, `best` those with the lowest val_loss so far (the loss of
Eq. 1 over the val split, as `fit` measures it at epoch ends; at a step checkpoint this
callback runs the same validation pass itself, keeping the epoch's training means intact).
The best val_loss and its step are kept in `checkpoints/best.json`, so that a resumed run
compares with it; `last` records its own step inside the file (an HDF5 attribute, written
before the file is renamed into place), so that a run whose backup is gone resumes from it.
Every file is written to a temporary name and renamed. Under MultiWorkerMirroredStrategy
every worker runs the callback (the validation pass all-reduces); the chief alone writes.
"""

from __future__ import annotations

import math
import os

import h5py
import keras
import numpy as np

from oanet_tf.errors import OANetError
from oanet_tf.fileio import read_json, write_json
from oanet_tf.inference.trained_model import BEST_RECORD, BEST_WEIGHTS, LAST_WEIGHTS
from oanet_tf.training.weights_file import save_weights

MONITOR = "val_loss"
STEP_ATTRIBUTE = "oanet_tf.step"  # the steps trained, on the root of `last`'s HDF5 file


def record_step(path: str, step: int):
    """Mark the weights file `path` as written after `step` steps."""
    with h5py.File(path, "a") as f:
        f.attrs[STEP_ATTRIBUTE] = int(step)


def recorded_step(path: str) -> int | None:
    """The step `record_step` marked `path` with; None for a file without one (written by
    `convert`, or before steps were recorded). An unreadable file -> OANetError naming it."""
    try:
        with h5py.File(path, "r") as f:
            step = f.attrs.get(STEP_ATTRIBUTE)
    except OSError as err:
        raise OANetError(f"{path} cannot be read as a weights file ({err})") from None
    return None if step is None else int(step)


class WeightsCheckpoints(keras.callbacks.Callback):
    """`validation`: (dataset, steps or None) of fit's validation, for the pass at step
    checkpoints; `every_steps` 0 = epoch ends only; `steps_done`: steps before this run;
    `write`: whether this process writes (the chief)."""

    def __init__(self, model_dir: str, every_steps: int, validation: tuple,
                 steps_done: int = 0, write: bool = True):
        super().__init__()
        if every_steps < 0:
            raise ValueError(f"train.checkpoint_every_steps must be >= 0, got {every_steps}")
        self.last_path = os.path.join(model_dir, LAST_WEIGHTS)
        self.best_path = os.path.join(model_dir, BEST_WEIGHTS)
        self.record_path = os.path.join(model_dir, BEST_RECORD)
        self.every_steps = int(every_steps)
        self.validation = validation
        self.step = int(steps_done)
        self.write = write
        self.best = self._recorded_best() if write else math.inf

    def _recorded_best(self) -> float:
        if not os.path.exists(self.record_path):
            return math.inf
        try:
            return float(read_json(self.record_path, "best checkpoint record")[MONITOR])
        except (KeyError, TypeError, ValueError) as err:
            raise OANetError(f"{self.record_path}: not a best checkpoint record ({err}); "
                             f"remove it to compare from scratch") from None

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if not self.every_steps or self.step % self.every_steps:
            return
        if batch + 1 == self.params["steps"]:
            return  # the epoch ends here: on_epoch_end writes, after fit's own validation
        self._save(self._validation_loss())

    def on_epoch_end(self, epoch, logs=None):
        self._save((logs or {}).get(MONITOR))

    def _validation_loss(self) -> float:
        """val_loss as fit's validation computes it, the training means left as they were
        (evaluate resets the model's metrics, which the epoch's logs are still made of)."""
        variables = [v for metric in self.model.metrics for v in metric.variables]
        saved = [keras.ops.convert_to_numpy(v) for v in variables]
        dataset, steps = self.validation
        logs = self.model.evaluate(dataset, steps=steps, verbose=0, return_dict=True)
        for variable, value in zip(variables, saved):
            variable.assign(value)
        return logs["loss"]

    def _save(self, val_loss):
        if not self.write:
            return
        save_weights(self.model, self.last_path,
                     finish=lambda temp: record_step(temp, self.step))
        if val_loss is None:
            return
        val_loss = float(np.mean(val_loss))
        if val_loss < self.best:  # never for NaN, as Keras' ModelCheckpoint
            save_weights(self.model, self.best_path)
            write_json(self.record_path, {MONITOR: val_loss, "step": self.step})
            self.best = val_loss
