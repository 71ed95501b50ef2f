"""Train OANet with `model.fit` under a tf.distribute strategy.

Everything a run needs to resume lives in its model dir: the resolved config, the categories,
the BackupAndRestore state, the last and best weights, and the TensorBoard logs.
"""

from __future__ import annotations

import dataclasses
import os

import keras
import tensorflow as tf

from oanet_tf.config import Config, save_config
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.data.pipeline import build_dataset
from oanet_tf.data.splits import resolve_split
from oanet_tf.fileio import write_json
from oanet_tf.modeling.builder import build_oanet
from oanet_tf.training.callbacks import PanopticEvalCallback
from oanet_tf.training.model_dir import BEST_WEIGHTS, CATEGORIES_FILE, CONFIG_FILE, LAST_WEIGHTS
from oanet_tf.training.schedule import build_optimizer
from oanet_tf.training.strategy import make_strategy



@dataclasses.dataclass
class TrainingRun:
    """What `train` returns: the model, its Keras history, and where things were written."""

    model: keras.Model
    history: keras.callbacks.History
    model_dir: str


def configure_numerics(config: Config):
    """Seed, op determinism and the mixed-precision policy, before any model is built."""
    keras.utils.set_random_seed(config.train.seed)
    if config.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(config.train.mixed_precision)


def _jit_compile(setting: str):
    return {"auto": "auto", "true": True, "false": False}[setting]


def build_compiled_model(config: Config, categories, strategy: tf.distribute.Strategy):
    """The OANet model and its optimizer, created in the strategy's scope."""
    with strategy.scope():
        model = build_oanet(config.model, config.train, categories, config.data.padded_size)
        model.compile(optimizer=build_optimizer(config.train, config.train.batch_size),
                      jit_compile=_jit_compile(config.train.jit_compile))
    return model


def train(config: Config, model_dir: str, strategy_name: str = "auto", verbose="auto",
          extra_callbacks=()) -> TrainingRun:
    """Train for `config.train.epochs` epochs; resumes from `model_dir` when a backup exists."""
    os.makedirs(os.path.join(model_dir, "checkpoints"), exist_ok=True)
    save_config(config, os.path.join(model_dir, CONFIG_FILE))
    configure_numerics(config)
    strategy = make_strategy(strategy_name)

    train_data = PanopticDataset.from_split(resolve_split(config.data, "train"),
                                            skip_bad_images=config.data.skip_bad_images)
    val_data = PanopticDataset.from_split(resolve_split(config.data, "val"),
                                          skip_bad_images=config.data.skip_bad_images)
    write_json(os.path.join(model_dir, CATEGORIES_FILE), list(train_data.categories.categories))
    batch = config.train.batch_size
    train_ds = build_dataset(train_data, config.data, training=True, batch_size=batch,
                             seed=config.train.seed)
    val_ds = build_dataset(val_data, config.data, training=False, batch_size=batch,
                           seed=config.train.seed)

    model = build_compiled_model(config, train_data.categories, strategy)
    callbacks = [
        # First, so that the callbacks after it (checkpoints, TensorBoard, History) see val_pq.
        PanopticEvalCallback(val_data, config, os.path.join(model_dir, "logs")),
        keras.callbacks.BackupAndRestore(os.path.join(model_dir, "backup"),
                                         save_freq="epoch", delete_checkpoint=False),
        keras.callbacks.ModelCheckpoint(os.path.join(model_dir, LAST_WEIGHTS),
                                        save_weights_only=True),
        keras.callbacks.ModelCheckpoint(os.path.join(model_dir, BEST_WEIGHTS),
                                        save_weights_only=True, save_best_only=True,
                                        monitor="val_loss", mode="min"),
        keras.callbacks.TensorBoard(os.path.join(model_dir, "logs"), update_freq="epoch"),
        *extra_callbacks,
    ]
    history = model.fit(train_ds, epochs=config.train.epochs,
                        steps_per_epoch=config.train.steps_per_epoch, validation_data=val_ds,
                        callbacks=callbacks, verbose=verbose, shuffle=False)
    train_data.report_bad_images()
    return TrainingRun(model, history, model_dir)
