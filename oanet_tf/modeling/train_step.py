"""The Keras train and test steps of a model that computes its own losses, apart from the
losses themselves.

`OANet.train_step` and `test_step` delegate here: the update skipped on every replica alike
when the loss or its gradients are not finite, the loss scaled for the replicas whose
gradients are summed, the per-term loss means Keras logs, and their shape under
multi-worker training. It lives beside the model, not in `training`, because `model.fit`
calls it as the model's own method (with any strategy, in the strategy's replica context);
what `training` adds (strategy, schedule, callbacks) wraps `model.fit` from above.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from oanet_tf.cluster import worker_index
from oanet_tf.modeling import guarded_update

TOTAL = "total"  # the key of Eq. 1's sum among the logged terms
NONFINITE_LOG = "nonfinite_steps"  # the log of skipped steps (`training.nonfinite` reads it)


class StepLog:
    """Means of every loss term over an epoch's finite steps, and the count of skipped ones."""

    def __init__(self, names):
        self.means = {name: keras.metrics.Mean(name=f"{name}_loss")
                      for name in tuple(names) + (TOTAL,)}
        self.skipped = keras.metrics.Sum(name=NONFINITE_LOG)

    @property
    def metrics(self) -> list:
        return list(self.means.values()) + [self.skipped]

    def update(self, losses: dict, total, finite) -> dict:
        """Add one step (a skipped one only counts as skipped) -> the step's logs."""
        weight = tf.cast(finite, tf.float32)
        for name, value in list(losses.items()) + [(TOTAL, total)]:
            self.means[name].update_state(tf.where(finite, value, 0.0), weight)
        self.skipped.update_state(1.0 - weight)
        logs = {f"{name}_loss" if name != TOTAL else "loss": mean.result()
                for name, mean in self.means.items()}
        logs[self.skipped.name] = self.skipped.result()
        if worker_index(tf.distribute.get_strategy()) is not None:
            # Keras reduces step logs across workers with strategy.reduce(MEAN, axis=0),
            # which rejects scalars (keras-team/keras#20585): give each a batch axis of 1.
            logs = {name: value[tf.newaxis] for name, value in logs.items()}
        return logs


def run_train_step(model, data) -> dict:
    """One optimizer step of `model` (compute_losses, total_loss, optimizer, step_log) on a
    per-replica batch; skipped on every replica when anything is not finite."""
    step = model.optimizer.iterations
    state = [tf.identity(v) for v in model.non_trainable_variables]  # before the forward
    with tf.GradientTape() as tape:
        losses = model.compute_losses(data, training=True, step=step)
        total = model.total_loss(losses)
        # Each replica's gradient is summed across replicas: scale the mean once here.
        scaled = model.optimizer.scale_loss(total / _num_replicas())
    gradients = tape.gradient(scaled, model.trainable_variables)
    # A loss-scale optimizer skips overflowing gradients itself (and lowers its scale);
    # otherwise a non-finite gradient skips the step as a non-finite loss does.
    scales_loss = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    finite = guarded_update.all_replicas_finite([total] + ([] if scales_loss else gradients))
    guarded_update.apply_if(model.optimizer, finite, gradients, model.trainable_variables)
    guarded_update.restore_unless(finite, model.non_trainable_variables, state)
    return model.step_log.update(losses, total, finite)


def run_test_step(model, data) -> dict:
    losses = model.compute_losses(data, training=False)
    total = model.total_loss(losses)
    return model.step_log.update(losses, total, guarded_update.all_replicas_finite([total]))


def build_optimizer(model):
    """Keras' symbolic build for a model that creates its variables when constructed: only
    the optimizer is left to build.

    Keras' own draws a sample batch from the training iterator and reduces it across
    replicas with `strategy.reduce`, which fails under MultiWorkerMirroredStrategy
    (keras-team/keras#20585) and takes one batch out of the training stream, so a resumed
    run would read different data than the run it continues.
    """
    if model.optimizer is not None and not model.optimizer.built:
        with model.distribute_strategy.scope():
            model.optimizer.build(model.trainable_variables)


def _num_replicas() -> float:
    """Replicas whose gradients are summed (1 outside tf.distribute)."""
    context = tf.distribute.get_replica_context()
    return float(context.num_replicas_in_sync) if context is not None else 1.0
