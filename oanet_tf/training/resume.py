"""Where a run into an existing model dir starts: a trained model is never trained again from
scratch unless asked.

In order: the backup (`oanet_tf.training.backup`: weights, optimizer state, step and seconds);
without one, `checkpoints/last` at the step it records (`WeightsCheckpoints` writes the
optimizer state too; its seconds trained are not known, so the count starts at 0). A model dir
holding trained weights but neither is refused, naming what is missing or damaged;
`train --overwrite` deletes what an earlier run left instead (`discard_run`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil

import keras

from oanet_tf.errors import OANetError
from oanet_tf.training import backup
from oanet_tf.training.checkpoints import recorded_step
from oanet_tf.inference.trained_model import BEST_RECORD, BEST_WEIGHTS, LAST_WEIGHTS

TRAINED_FILES = (LAST_WEIGHTS, BEST_WEIGHTS, BEST_RECORD)
RUN_FOLDERS = ("checkpoints", "logs")  # what the chief of a run writes besides the backups
REFUSAL_REMEDY = ("train --overwrite starts a new model over it, or train into another "
                  "--model-dir (--set model.init_from=DIR starts from its weights)")


@dataclasses.dataclass
class StartPoint:
    """`steps` done before this run, `source` restored (a backup folder or a weights file;
    None for a fresh start), `seconds` trained before it."""

    steps: int = 0
    source: str | None = None
    seconds: float = 0.0


def restore_run(model: keras.Model, model_dir: str, backup_dir: str) -> StartPoint:
    """Load what `model_dir` holds of an earlier run into `model` (weights and optimizer);
    a model dir with trained weights that cannot be resumed -> OANetError."""
    steps = backup.restore(model, backup_dir)
    if steps:
        return StartPoint(steps, backup_dir, backup.seconds_trained(backup_dir))
    found = [name for name in TRAINED_FILES if os.path.exists(os.path.join(model_dir, name))]
    if not found:
        return StartPoint()
    last = os.path.join(model_dir, LAST_WEIGHTS)
    held = (f"{model_dir} holds a trained model ({', '.join(found)}) but no backup "
            f"({os.path.join(backup_dir, backup.STATE_FILE)} not found)")
    if not os.path.isfile(last):
        raise OANetError(f"{held} nor {LAST_WEIGHTS} to resume from; {REFUSAL_REMEDY}")
    try:
        step = recorded_step(last)
    except OANetError as err:
        raise OANetError(f"{held}, and {err}; {REFUSAL_REMEDY}") from None
    if step is None:
        raise OANetError(f"{held}, and {last} records no step to resume at (written by "
                         f"convert, or by oanet_tf before it recorded steps); {REFUSAL_REMEDY}")
    backup.load_training_state(model, last, f"{held}, and {last}", REFUSAL_REMEDY)
    return StartPoint(step, last)


def discard_run(model_dir: str, backup_dir: str, chief: bool):
    """Delete an earlier run's backups (this worker's) and, on the chief, its checkpoints and
    TensorBoard logs: a new model starts over it."""
    folders = [backup_dir] + ([os.path.join(model_dir, f) for f in RUN_FOLDERS] if chief else [])
    for folder in folders:
        if os.path.isdir(folder):
            shutil.rmtree(folder)
            print(f"--overwrite: deleted {folder}")
