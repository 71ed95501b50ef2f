"""oanet_tf.ops.sampling: balanced positive / negative sampling, its counts and its seeds."""

import numpy as np
import tensorflow as tf

from oanet_tf.ops import sampling


def _labels(counts, num=200):
    """[B, num] labels with (positives, negatives) per image, the rest ignored, shuffled."""
    rng = np.random.default_rng(4)
    rows = []
    for pos, neg in counts:
        row = np.array([1] * pos + [0] * neg + [-1] * (num - pos - neg))
        rows.append(rng.permutation(row))
    return tf.constant(np.array(rows), tf.int32)


def test_sampling_counts_order_and_padding():
    labels = _labels([(10, 100), (3, 20), (30, 100)])
    indices, valid = sampling.sample_balanced_indices(labels, 64, 0.25, seed=(1, 2))
    assert indices.shape == (3, 64) and valid.shape == (3, 64)
    picked = tf.gather(labels, indices, batch_dims=1).numpy()
    indices, valid = indices.numpy(), valid.numpy()
    # (positives, negatives): min(pos, 16), then negatives fill up to 64 while they last.
    for b, (pos, neg) in enumerate([(10, 54), (3, 20), (16, 48)]):
        np.testing.assert_array_equal(picked[b, valid[b]], [1] * pos + [0] * neg)
        assert valid[b].sum() == pos + neg and not valid[b, pos + neg:].any()
        assert len(set(indices[b, valid[b]])) == pos + neg
    np.testing.assert_array_equal(indices[~valid], 0)

    mask = sampling.sample_balanced(labels, 64, 0.25, seed=(1, 2)).numpy()
    for b in range(3):
        assert set(np.flatnonzero(mask[b])) == set(indices[b, valid[b]])
    assert not (mask & (labels.numpy() == -1)).any()


def test_sampling_is_deterministic_per_seed_and_random_across_seeds():
    labels = _labels([(10, 100)])
    first = sampling.sample_balanced(labels, 8, 0.25, seed=(5, 0)).numpy()
    np.testing.assert_array_equal(first, sampling.sample_balanced(labels, 8, 0.25, seed=(5, 0)))
    assert (first != sampling.sample_balanced(labels, 8, 0.25, seed=(5, 1)).numpy()).any()
    ever = np.zeros(labels.shape, bool)
    for step in range(50):
        ever |= sampling.sample_balanced(labels, 8, 0.25, seed=tf.constant([5, step])).numpy()
    assert ever[labels.numpy() == 1].all()  # every positive gets its turn

    draw = tf.function(lambda: sampling.sample_balanced(labels, 8, 0.25, seed=7))
    assert (draw().numpy() != draw().numpy()).any()  # op-level seed: a new draw per call
