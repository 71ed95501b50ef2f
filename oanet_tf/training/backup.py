"""Step-level backups, so that a run killed at any moment resumes where it was.

A backup is a weights file that includes the optimizer's state (slots and iteration count,
hence the learning rate) plus `state.json`, which names that file, counts the batches
consumed and the seconds training took to get there over every attempt (so a resumed run
still knows how long it trained). Both are written to temporary files and renamed, the
weights first: a kill at any instant leaves the previous complete backup in place. Keras'
BackupAndRestore resumes at an epoch boundary only and writes in place; this one resumes at
the step, and the input pipeline skips exactly the batches already consumed
(`build_dataset(start_batch=...)`).
"""

from __future__ import annotations

import glob
import os
import time

import keras

from oanet_tf.errors import OANetError
from oanet_tf.fileio import read_json, remove_leftovers, write_json
from oanet_tf.training.weights_file import save_weights

STATE_FILE = "state.json"
WEIGHTS_PATTERN = "step-{:09d}.weights.h5"


def backup_dir_for(model_dir: str, worker: int | None) -> str:
    """MODEL_DIR/backup, or MODEL_DIR/backup/worker-<i> for worker i of a multi-worker run
    (each worker keeps its own: workers must not write the same files)."""
    base = os.path.join(model_dir, "backup")
    return base if worker is None else os.path.join(base, f"worker-{worker}")


def read_state(backup_dir: str) -> dict | None:
    """The last complete backup's state ({"batches": int, "weights": file name, "seconds":
    float}) or None; a backup written before the seconds were counted reads as 0 seconds."""
    path = os.path.join(backup_dir, STATE_FILE)
    if not os.path.exists(path):
        return None
    try:
        state = read_json(path, "backup state")
    except ValueError as err:
        raise OANetError(f"{err}; move {backup_dir} away, or train --overwrite to start "
                         f"afresh") from None
    seconds = state.get("seconds", 0) if isinstance(state, dict) else None
    if (not isinstance(state, dict) or not {"batches", "weights"} <= set(state)
            or isinstance(state["batches"], bool) or not isinstance(state["batches"], int)
            or state["batches"] < 0 or not isinstance(state["weights"], str)
            or os.path.basename(state["weights"]) != state["weights"]
            or isinstance(seconds, bool) or not isinstance(seconds, (int, float))
            or not seconds >= 0):
        raise OANetError(f"{path}: not a backup state (expected a count of batches, the "
                         f"name of a weights file beside it and the seconds trained); move "
                         f"{backup_dir} away, or train --overwrite to start afresh")
    return {**state, "seconds": float(seconds)}


def restore(model: keras.Model, backup_dir: str) -> int:
    """Load the last backup into `model` (weights and optimizer); returns the number of
    batches consumed before it (0 when there is no backup). Temporary files a killed run
    left in `backup_dir` are deleted."""
    remove_leftovers(backup_dir)
    state = read_state(backup_dir)
    if state is None:
        return 0
    path = os.path.join(backup_dir, state["weights"])
    load_training_state(model, path, f"backup {path}",
                        f"move {backup_dir} away, or train --overwrite to start afresh")
    return int(state["batches"])


def load_training_state(model: keras.Model, path: str, what: str, remedy: str):
    """Load weights and optimizer state from the file `path` into `model`; one that does not
    load -> OANetError naming `what`, Keras' reason and the `remedy`."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(path)
    except (OSError, ValueError) as err:
        raise OANetError(f"{what} cannot be loaded ({str(err).splitlines()[0]}); "
                         f"{remedy}") from None


def seconds_trained(backup_dir: str) -> float:
    """Seconds of training behind the last backup, over every attempt (0 without one)."""
    state = read_state(backup_dir)
    return 0.0 if state is None else state["seconds"]


class TrainingBackup(keras.callbacks.Callback):
    """Writes a backup every `every_steps` batches and at the end of every epoch;
    `batches_done` and `seconds_done`: what the restored backup had trained. The clock runs
    from this callback's creation (the model is built before it)."""

    def __init__(self, backup_dir: str, every_steps: int, batches_done: int = 0,
                 seconds_done: float = 0.0):
        super().__init__()
        if every_steps <= 0:
            raise OANetError(f"train.backup_every_steps must be positive, got {every_steps}")
        self.backup_dir = backup_dir
        self.every_steps = int(every_steps)
        self.batches_done = int(batches_done)
        self._saved_at = self.batches_done
        self.seconds_done = float(seconds_done)
        self._created = time.monotonic()

    def seconds(self) -> float:
        """Seconds trained so far, over every attempt."""
        return self.seconds_done + time.monotonic() - self._created

    def on_train_batch_end(self, batch, logs=None):
        self.batches_done += 1
        if self.batches_done % self.every_steps == 0:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self.save()

    def save(self):
        if self._saved_at == self.batches_done:  # an epoch end right after a step backup
            return
        name = WEIGHTS_PATTERN.format(self.batches_done)
        save_weights(self.model, os.path.join(self.backup_dir, name))
        write_json(os.path.join(self.backup_dir, STATE_FILE),
                   {"batches": self.batches_done, "weights": name, "seconds": self.seconds()})
        self._saved_at = self.batches_done
        for old in glob.glob(os.path.join(self.backup_dir, "step-*.weights.h5")):
            if os.path.basename(old) != name:
                os.remove(old)
