"""Train OANet with `model.fit` under a tf.distribute strategy.

Everything a run needs to resume lives in its model dir: the resolved config, the categories,
the step-level backups, the last and best weights, and the TensorBoard logs. Under
MultiWorkerMirroredStrategy the chief alone writes checkpoints, logs and evaluations; every
worker keeps its own backup.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings

import keras
import tensorflow as tf

from oanet_tf.cluster import is_chief, worker_index
from oanet_tf.config import Config, save_config, validate_for_training
from oanet_tf.data.panoptic_format import CategoryMap
from oanet_tf.data.pipeline import build_dataset
from oanet_tf.data.splits import open_split
from oanet_tf.dir_lock import exclusive_writer
from oanet_tf.environment import record_start
from oanet_tf.errors import OANetError
from oanet_tf.fileio import write_json
from oanet_tf.inference.trained_model import (CATEGORIES_FILE, CONFIG_FILE, load_weights_into,
                                              read_categories, weights_path)
from oanet_tf.modeling.builder import build_oanet
from oanet_tf.training import backup
from oanet_tf.training.backup import backup_dir_for
from oanet_tf.training.callbacks import PanopticEvalCallback
from oanet_tf.training.checkpoints import WeightsCheckpoints
from oanet_tf.training.nonfinite import NonFiniteLossGuard
from oanet_tf.training.resume import StartPoint, discard_run, restore_run
from oanet_tf.training.schedule import build_optimizer
from oanet_tf.training.step_summaries import StepSummaries
from oanet_tf.training.stop_signals import StopAtSignal, StopRequest
from oanet_tf.training.strategy import make_strategy


@dataclasses.dataclass
class TrainingRun:
    """What `train` returns: the model, its Keras history, where things were written, the
    seconds the run trained over every attempt (a resumed run counts those before it, up to
    their last backup), and the val split's scores after the last epoch (`evaluate_model`'s
    results; None when this call trained no last epoch, or on a worker that is not the
    chief)."""

    model: keras.Model
    history: keras.callbacks.History
    model_dir: str
    seconds: float
    final_evaluation: dict | None = None


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
        model = build_oanet(config.model, config.train, categories)
        model.compile(optimizer=build_optimizer(config.train, config.train.batch_size),
                      jit_compile=_jit_compile(config.train.jit_compile))
    return model


def _initialize_from(model, init_dir: str, categories):
    """A fresh run starts from the weights of model dir `init_dir` (model.init_from), such as
    a converted torchvision model; a resumed run reads its backup instead."""
    check_categories_fit(init_dir, categories)
    path = weights_path(init_dir, "last")
    with warnings.catch_warnings():  # the start file has no optimizer state, by design
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        load_weights_into(model, path, f"model.init_from {init_dir}")
    print(f"initialised from {path}")


def check_categories_fit(model_dir: str, categories: CategoryMap):
    """Refuse to train into a model dir whose model has other categories: its weights,
    backups and files belong to another model."""
    path = os.path.join(model_dir, CATEGORIES_FILE)
    if not os.path.exists(path):
        return
    held = read_categories(path)
    if held.semantic_ids != categories.semantic_ids:
        raise OANetError(f"{path}: --model-dir holds a model of other categories "
                         f"({held.num_things} things, {held.num_stuff} stuff) than the "
                         f"training data ({categories.num_things} things, "
                         f"{categories.num_stuff} stuff); train into another --model-dir")


def train(config: Config, model_dir: str, strategy_name: str = "auto", verbose="auto",
          extra_callbacks=(), overwrite: bool = False) -> TrainingRun:
    """Train for `config.train.epochs` epochs. A model dir holding an earlier run resumes it
    from its backup, else from `checkpoints/last`, or is refused (`oanet_tf.training.resume`);
    `overwrite` deletes that run and starts afresh instead. The chief holds the model dir's
    lock while it runs (`oanet_tf.dir_lock`); SIGTERM or SIGINT stops the run after the
    current step and its backup (`oanet_tf.training.stop_signals`: TrainingStopped)."""
    validate_for_training(config)
    # The strategy first: MultiWorkerMirroredStrategy must exist before any TF op runs.
    strategy = make_strategy(strategy_name)
    configure_numerics(config)
    with exclusive_writer(model_dir, "train") if is_chief(strategy) else contextlib.nullcontext():
        return _train(config, model_dir, strategy, verbose, extra_callbacks, overwrite)


def _train(config, model_dir, strategy, verbose, extra_callbacks, overwrite) -> TrainingRun:
    """`train` once the model dir is this process's to write."""
    chief, worker = is_chief(strategy), worker_index(strategy)
    train_data = open_split(config.data, "train", config.data.skip_bad_images)
    val_data = open_split(config.data, "val", config.data.skip_bad_images)
    if not overwrite:
        check_categories_fit(model_dir, train_data.categories)
    model = build_compiled_model(config, train_data.categories, strategy)
    backup_dir = backup_dir_for(model_dir, worker)
    start = _start(config, model, model_dir, backup_dir, strategy, overwrite, chief,
                   train_data.categories)
    # Only now that the model dir is known to hold this run (or nothing): a rejected run
    # leaves another model's files as they were.
    if chief:
        os.makedirs(os.path.join(model_dir, "checkpoints"), exist_ok=True)
        record_start(model_dir, "train")  # first: a malformed environment.json stops here
        save_config(config, os.path.join(model_dir, CONFIG_FILE))
        write_json(os.path.join(model_dir, CATEGORIES_FILE),
                   list(train_data.categories.categories))
    steps, done = config.train.steps_per_epoch, start.steps
    if start.source:
        print(f"resuming from {start.source} after step {done} (epoch {done // steps + 1}, "
              f"step {done % steps} of {steps}; optimizer step "
              f"{int(model.optimizer.iterations.numpy())})")

    val_ds, val_steps = _validation_input(val_data, config, strategy, worker)
    with StopRequest() as request:
        callbacks = _callbacks(config, model_dir, val_data, (val_ds, val_steps), chief,
                               backup_dir, start, (request, strategy))
        histories = _fit(model, config, strategy, train_data, val_ds, val_steps, done,
                         callbacks + list(extra_callbacks), verbose)
    train_data.report_bad_images()
    evaluation = next((c.final_results for c in callbacks
                       if isinstance(c, PanopticEvalCallback)), None)
    clock = next(c for c in callbacks if isinstance(c, backup.TrainingBackup))
    return TrainingRun(model, _merged(histories), model_dir, clock.seconds(), evaluation)


def _start(config, model, model_dir, backup_dir, strategy, overwrite, chief,
           categories) -> StartPoint:
    """Restore the earlier run (unless `overwrite`, which deletes it), else start from
    model.init_from when set."""
    with strategy.scope():
        start = StartPoint() if overwrite else restore_run(model, model_dir, backup_dir)
        if start.source is None and config.model.init_from:
            _initialize_from(model, config.model.init_from, categories)
    if overwrite:
        discard_run(model_dir, backup_dir, chief)
    return start


def _fit(model, config, strategy, train_data, val_ds, val_steps, done, callbacks, verbose):
    """The fit calls of `_epoch_plan` -> their histories. A run killed mid-epoch first
    finishes that epoch, then runs whole ones."""
    steps = config.train.steps_per_epoch
    histories = []
    for first_epoch, last_epoch, epoch_steps in _epoch_plan(done, steps, config.train.epochs):
        start = first_epoch * steps + (steps - epoch_steps)
        train_ds = strategy.distribute_datasets_from_function(
            lambda context, start=start: build_dataset(
                train_data, config.data, training=True, batch_size=config.train.batch_size,
                seed=config.train.seed, input_context=context,
                start_batch=start * _batches_per_step(context)))
        histories.append(model.fit(train_ds, initial_epoch=first_epoch, epochs=last_epoch,
                                   steps_per_epoch=epoch_steps, validation_data=val_ds,
                                   validation_steps=val_steps, callbacks=callbacks,
                                   verbose=verbose, shuffle=False))
    return histories


def _batches_per_step(context: tf.distribute.InputContext) -> int:
    """Batches one input pipeline gives per step: one per replica it feeds."""
    return context.num_replicas_in_sync // context.num_input_pipelines


def _epoch_plan(done: int, steps: int, epochs: int):
    """[(initial_epoch, epochs, steps_per_epoch)] of the fit calls that finish a run of
    `epochs` x `steps` batches of which `done` are done: the rest of an interrupted epoch,
    then whole epochs."""
    epoch, into_epoch = divmod(done, steps)
    plan = []
    if into_epoch and epoch < epochs:
        plan.append((epoch, epoch + 1, steps - into_epoch))
        epoch += 1
    if epoch < epochs:
        plan.append((epoch, epochs, steps))
    return plan


def _callbacks(config, model_dir, val_data, validation, chief, backup_dir, start, stopping):
    """The non-finite loss guard first (a stopped run writes nothing after a bad step); on the
    chief step scalars (before the others, whose time they do not count), evaluation
    (before the checkpoints and TensorBoard, so that they see val_pq) and TensorBoard;
    checkpoints on every worker (their validation pass all-reduces; the chief writes), then
    backups, then the stop on a signal (`stopping`: its StopRequest and the strategy), which
    writes a backup first. Every step counter starts at `start.steps`, the steps restored,
    and the backups' clock at `start.seconds`."""
    log_dir = os.path.join(model_dir, "logs")
    train, done = config.train, start.steps
    callbacks = [NonFiniteLossGuard(train.on_nonfinite_loss, done, backup_dir)]
    if chief and train.log_every_steps:
        callbacks.append(StepSummaries(log_dir, train.log_every_steps, train.batch_size, done))
    if chief:
        callbacks.append(PanopticEvalCallback(val_data, config, log_dir, steps_done=done))
    callbacks.append(WeightsCheckpoints(model_dir, train.checkpoint_every_steps, validation,
                                        done, write=chief))
    if chief:
        callbacks.append(keras.callbacks.TensorBoard(log_dir, update_freq="epoch"))
    backups = backup.TrainingBackup(backup_dir, train.backup_every_steps, done, start.seconds)
    request, strategy = stopping
    return callbacks + [backups, StopAtSignal(request, backups, strategy)]


def _validation_input(val_data, config, strategy, worker):
    """The validation dataset and step count for fit. Workers of a multi-worker run must run
    the same number of steps (each step all-reduces): they read their shard repeated, for
    as many steps as the whole split needs."""
    batch = config.train.batch_size
    if worker is None:
        return build_dataset(val_data, config.data, training=False, batch_size=batch,
                             seed=config.train.seed), None
    dataset = strategy.distribute_datasets_from_function(
        lambda context: build_dataset(val_data, config.data, training=False, batch_size=batch,
                                      seed=config.train.seed, input_context=context,
                                      repeat=True))
    return dataset, max(1, -(-len(val_data) // batch))


def _merged(histories) -> keras.callbacks.History:
    """One History over the fit calls of a run."""
    merged = keras.callbacks.History()
    merged.epoch = []
    for history in histories:
        merged.epoch += history.epoch
        for key, values in history.history.items():
            merged.history.setdefault(key, []).extend(values)
    if histories:
        merged.set_model(histories[-1].model)
    return merged
