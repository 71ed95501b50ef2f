"""TensorBoard scalars every `train.log_every_steps` steps, for epochs too long to wait for.

Keras' TensorBoard(update_freq=N) writes the epoch's running means at steps that restart
with every fit call (a resumed run starts again at 0), without the learning rate or images
per second. This callback writes into `<log_dir>/steps`, at the run's step (a resumed run
goes on counting from its restored step):

- each loss term Keras logs (`loss`, `rpn_cls_loss`, ...): its mean over the finite steps
  since the previous point, not since the epoch began (at 100k steps an epoch's mean barely
  moves). The model logs running means over an epoch's finite steps; the window's mean is
  recovered from them and their counts, also across an epoch's end;
- `nonfinite_steps`: the steps skipped in that window;
- `learning_rate`: the rate of the next step;
- `images_per_second`: global batch x steps / the seconds the window's steps took, from
  each step's begin to this callback (evaluation and checkpoints between steps not counted).
"""

from __future__ import annotations

import os
import time

import keras
import numpy as np
import tensorflow as tf

from oanet_tf.modeling.train_step import NONFINITE_LOG

STEPS_SUBDIR = "steps"
LEARNING_RATE_TAG = "learning_rate"
IMAGES_PER_SECOND_TAG = "images_per_second"


class _Tally:
    """Finite steps, skipped steps and the sum of each loss term over the finite ones."""

    def __init__(self, finite: float = 0.0, skipped: float = 0.0, sums: dict | None = None):
        self.finite, self.skipped, self.sums = finite, skipped, dict(sums or {})

    def __add__(self, other: "_Tally") -> "_Tally":
        keys = set(self.sums) | set(other.sums)
        return _Tally(self.finite + other.finite, self.skipped + other.skipped,
                      {k: self.sums.get(k, 0.0) + other.sums.get(k, 0.0) for k in keys})

    def __sub__(self, other: "_Tally") -> "_Tally":
        keys = set(self.sums) | set(other.sums)
        return _Tally(self.finite - other.finite, self.skipped - other.skipped,
                      {k: self.sums.get(k, 0.0) - other.sums.get(k, 0.0) for k in keys})


class StepSummaries(keras.callbacks.Callback):
    """Writes the scalars of the module docstring every `every_steps` steps (the chief's
    job in a multi-worker run); `steps_done`: steps before this run (resume)."""

    def __init__(self, log_dir: str, every_steps: int, global_batch_size: int,
                 steps_done: int = 0):
        super().__init__()
        if every_steps <= 0:
            raise ValueError(f"train.log_every_steps must be positive here, got {every_steps}")
        self.log_dir = os.path.join(log_dir, STEPS_SUBDIR)
        self.every_steps = int(every_steps)
        self.global_batch_size = int(global_batch_size)
        self.step = int(steps_done)
        self._writer = None
        self._carried = _Tally()  # the window's part in epochs that have ended
        self._mark = _Tally()  # the epoch's tally when the window began (in this epoch)
        self._epoch = _Tally()  # the epoch's tally so far
        self._seconds = 0.0
        self._steps = 0
        self._began = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._mark, self._epoch = _Tally(), _Tally()  # the model's means restart

    def on_epoch_end(self, epoch, logs=None):
        self._carried = self._carried + (self._epoch - self._mark)
        self._mark = self._epoch

    def on_train_batch_begin(self, batch, logs=None):
        self._began = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        values = {key: float(np.mean(keras.ops.convert_to_numpy(value)))
                  for key, value in (logs or {}).items()}
        self._seconds += time.perf_counter() - self._began
        self._steps += 1
        self.step += 1
        skipped = values.pop(NONFINITE_LOG, 0.0)
        finite = batch + 1 - skipped
        self._epoch = _Tally(finite, skipped, {k: v * finite for k, v in values.items()})
        if self.step % self.every_steps == 0:
            self._write(self._carried + (self._epoch - self._mark))
            self._carried, self._mark = _Tally(), self._epoch
            self._seconds, self._steps = 0.0, 0

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _write(self, window: _Tally):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default(step=self.step):
            if window.finite > 0:
                for key, total in sorted(window.sums.items()):
                    tf.summary.scalar(key, total / window.finite)
            tf.summary.scalar(NONFINITE_LOG, window.skipped)
            tf.summary.scalar(LEARNING_RATE_TAG, float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate)))
            if self._seconds > 0:
                tf.summary.scalar(IMAGES_PER_SECOND_TAG,
                                  self.global_batch_size * self._steps / self._seconds)
        self._writer.flush()
