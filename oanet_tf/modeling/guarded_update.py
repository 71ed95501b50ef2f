"""An optimizer step that is skipped, on every replica alike, when the loss is not finite.

One NaN or Inf (a corrupt annotation, an overflow) would otherwise poison every weight and,
through momentum, every later step. The decision is all-reduced so that all replicas (and
all workers) skip together: a step applied on some replicas only would desynchronise the
mirrored weights. A skipped step leaves weights, optimizer slots, the iteration counter
(hence the learning rate) and batch-norm statistics exactly as they were.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def all_replicas_finite(values) -> tf.Tensor:
    """True (a bool scalar, equal on every replica) when every tensor in `values` is finite
    on every replica. `values`: a list of tensors (None entries are ignored)."""
    local_bad = tf.constant(0.0)
    for value in values:
        if value is not None:
            local_bad += 1.0 - tf.cast(tf.reduce_all(tf.math.is_finite(value)), tf.float32)
    context = tf.distribute.get_replica_context()
    total_bad = context.all_reduce(tf.distribute.ReduceOp.SUM, local_bad) if context else local_bad
    return tf.equal(total_bad, 0.0)


def apply_if(optimizer: keras.optimizers.Optimizer, condition, gradients, variables):
    """`optimizer.apply(gradients, variables)` when `condition` holds, else nothing.

    `condition` must be the same on every replica (see `all_replicas_finite`). Under a
    strategy whose optimizer update goes through `merge_call` (MirroredStrategy on some
    versions), the branch is taken in cross-replica context: a `tf.cond` in replica context
    may not contain a `merge_call`.
    """
    context = tf.distribute.get_replica_context()
    if context is None or tf.__internal__.distribute.strategy_supports_no_merge_call():
        tf.cond(condition, lambda: _apply(optimizer, gradients, variables), _skip)
        return

    def cross_replica(strategy, condition, gradients):
        # Every replica holds the same all-reduced condition: read the first.
        condition = strategy.experimental_local_results(condition)[0]
        tf.cond(condition,
                lambda: strategy.extended.call_for_each_replica(
                    _apply, args=(optimizer, gradients, variables)),
                _skip)

    context.merge_call(cross_replica, args=(condition, gradients))


def restore_unless(condition, variables, saved):
    """Put `saved` values back into `variables` unless `condition` holds: a skipped step must
    not keep what its forward pass wrote (batch-norm moving statistics)."""
    for variable, value in zip(variables, saved):
        variable.assign(tf.where(condition, variable, value))


def _apply(optimizer, gradients, variables):
    optimizer.apply(gradients, variables)


def _skip():
    return None
