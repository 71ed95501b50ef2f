"""Balanced sampling of positive and negative training examples.

As Detectron2's subsample_labels: up to int(num_samples * positive_fraction) random
positives, random negatives fill the rest; ignored (-1) entries are never sampled.

Randomness, chosen by `seed`:
  - a pair of integers (or an int tensor of shape [2]): stateless. The sample is a pure
    function of (labels, seed); pass e.g. tf.stack([seed, step]) for a new draw per step.
  - an int: op-level seed of a stateful random op. Each call of the traced function draws
    anew and the sequence of draws repeats from run to run (also under XLA).
  - None: unseeded, not reproducible.
Under tf.distribute every replica draws from the same stream (on its own images).
"""

from __future__ import annotations

import numbers

import tensorflow as tf

from oanet_tf.ops.matcher import NEGATIVE, POSITIVE
from oanet_tf.ops.shapes import dim

NOT_A_CANDIDATE = -1.0  # sort key of entries that may not be drawn; random keys lie in [0, 1)


def _random_keys(shape, seed):
    """Uniform [0, 1) keys of `shape` drawn as described in the module docstring."""
    if seed is None or isinstance(seed, numbers.Integral):
        return tf.random.uniform(shape, seed=None if seed is None else int(seed))
    seed = tf.convert_to_tensor(seed)
    if seed.shape != [2]:
        raise ValueError(f"a stateless seed must have shape [2], got {seed.shape}")
    return tf.random.stateless_uniform(shape, seed=tf.cast(seed, tf.int64))


def _random_candidates(candidates, keys, k: int):
    """Up to k random candidates per row: indices [B, k] int32 and their count [B] int32.

    Candidates come first in random order, followed by non-candidates (whose indices, in
    slots past the count, may point beyond the row when its length is not static).
    """
    length = dim(candidates, 1)
    if isinstance(length, int):
        k = min(k, length)
    else:  # a row known only when the graph runs: padded so that k is static and exists
        candidates = tf.pad(candidates, [[0, 0], [0, k]])
        keys = tf.pad(keys, [[0, 0], [0, k]])
    _, index = tf.math.top_k(tf.where(candidates, keys, NOT_A_CANDIDATE), k=k, sorted=True)
    count = tf.minimum(tf.reduce_sum(tf.cast(candidates, tf.int32), axis=1), k)
    return index, count


def sample_balanced_indices(labels, num_samples: int, positive_fraction: float, seed=None):
    """Indices of a balanced sample: positives first, then negatives, then padding.

    labels [B, N] int (1, 0, -1) -> indices [B, num_samples] int32 (0 in padding),
    valid [B, num_samples] bool (False where fewer candidates than num_samples exist).
    """
    if num_samples <= 0 or not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"need num_samples > 0 and 0 <= positive_fraction <= 1, got "
                         f"{num_samples}, {positive_fraction}")
    labels = tf.cast(labels, tf.int32)
    keys = _random_keys(tf.shape(labels), seed)
    max_positives = int(num_samples * positive_fraction)
    pos_index, pos_count = _random_candidates(tf.equal(labels, POSITIVE), keys, max_positives)
    neg_index, neg_count = _random_candidates(tf.equal(labels, NEGATIVE), keys, num_samples)
    neg_count = tf.minimum(neg_count, num_samples - pos_count)
    # Slot j takes positive j while j < pos_count, then negative j - pos_count.
    slot = tf.range(num_samples)[None, :]  # [1, S]
    pos_count, neg_count = pos_count[:, None], neg_count[:, None]  # [B, 1]
    num_pos_slots = int(pos_index.shape[1])
    source = tf.where(slot < pos_count, slot, num_pos_slots + slot - pos_count)
    source = tf.minimum(source, num_pos_slots + int(neg_index.shape[1]) - 1)
    indices = tf.gather(tf.concat([pos_index, neg_index], axis=1), source, batch_dims=1)
    valid = slot < pos_count + neg_count
    return tf.where(valid, indices, 0), valid


def sample_balanced(labels, num_samples: int, positive_fraction: float, seed=None):
    """The same sample as a mask.

    labels [B, N] int (1, 0, -1) -> sampled [B, N] bool.
    """
    indices, valid = sample_balanced_indices(labels, num_samples, positive_fraction, seed)
    batch_index = tf.broadcast_to(tf.range(tf.shape(indices)[0])[:, None], tf.shape(indices))
    scatter_index = tf.stack([batch_index, indices], axis=-1)  # [B, S, 2]
    counts = tf.scatter_nd(scatter_index, tf.cast(valid, tf.int32),
                           tf.shape(labels, out_type=tf.int32))
    return counts > 0


def step_seed(seed: int, stream: int, step):
    """A stateless seed [2] for one random stream of one step on this replica, so that a step
    draws the same samples whenever it runs: after a resume, on any worker layout, twice."""
    key = tf.constant([seed, stream], tf.int64)
    key = tf.random.experimental.stateless_fold_in(key, tf.cast(step, tf.int64))
    context = tf.distribute.get_replica_context()
    replica = context.replica_id_in_sync_group if context is not None else 0
    return tf.random.experimental.stateless_fold_in(key, replica)
