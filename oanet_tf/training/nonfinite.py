"""What happens after a step with a NaN or Inf loss: carry on, or stop, by config.

The model never applies such a step (see `oanet_tf.modeling.guarded_update`); it counts it
in the `nonfinite_steps` log. This callback reads that count after every batch: with
`train.on_nonfinite_loss: skip` it reports the skipped step and training goes on; with
`stop` it raises before any later callback runs, so no backup or checkpoint is written after
the bad step and the last ones stay as they were.
"""

from __future__ import annotations

import sys

import keras
import numpy as np

from oanet_tf.config import NONFINITE_ACTIONS
from oanet_tf.errors import NonFiniteLossError
from oanet_tf.modeling.train_step import NONFINITE_LOG



class NonFiniteLossGuard(keras.callbacks.Callback):
    """`mode` "skip" or "stop"; `batches_done`: batches consumed before this run (resume)."""

    def __init__(self, mode: str, batches_done: int = 0, backup_dir: str = ""):
        super().__init__()
        if mode not in NONFINITE_ACTIONS:
            raise ValueError(f"mode must be one of {NONFINITE_ACTIONS}, got {mode!r}")
        self.mode = mode
        self.batches_done = int(batches_done)
        self.backup_dir = backup_dir
        self.skipped = 0
        self._seen_in_epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._seen_in_epoch = 0  # the model's counter restarts with every epoch

    def on_train_batch_end(self, batch, logs=None):
        self.batches_done += 1
        count = int(round(float(np.mean(logs.get(NONFINITE_LOG, 0.0))))) if logs else 0
        if count <= self._seen_in_epoch:
            return
        self._seen_in_epoch = count
        self.skipped += 1
        step = self.batches_done  # 1-based number of the batch just run
        if self.mode == "stop":
            where = f"; the last backup is in {self.backup_dir}" if self.backup_dir else ""
            raise NonFiniteLossError(
                f"step {step}: the loss or its gradients are NaN or Inf; the update was not "
                f"applied and training stopped (train.on_nonfinite_loss: stop). Weights, "
                f"backups and checkpoints written before this step are intact{where}. Set "
                f"train.on_nonfinite_loss=skip to skip such steps instead")
        print(f"\nstep {step}: non-finite loss, update skipped ({self.skipped} so far)",
              file=sys.stderr)
