"""The stuff branch: labels in both supervision modes, its loss and stuff probabilities."""

import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.data.panoptic_format import IGNORE_LABEL
from oanet_tf.modeling.stuff_branch import SEMANTIC_STRIDE, StuffBranch
from tests.modeling.layer_checks import H, W, pyramid, round_trip

THINGS, STUFF = 2, 3


def _branch(supervision):
    return StuffBranch(num_things=THINGS, num_stuff=STUFF, channels=8, supervision=supervision,
                       loss_weight=0.25)


def _semantic(seed=0):
    rng = np.random.default_rng(seed)
    semantic = rng.integers(0, THINGS + STUFF, size=(2, H, W)).astype(np.int32)
    semantic[rng.random((2, H, W)) < 0.1] = IGNORE_LABEL
    return semantic


@pytest.mark.parametrize("supervision, mapping", [
    ("all", {0: 0, 1: 1, 2: 2, 3: 3, 4: 4}),
    ("stuff_plus_things", {0: 0, 1: 0, 2: 1, 3: 2, 4: 3})])  # things -> 0, stuff -> 1..S
def test_labels_sample_cell_centres_in_the_head_layout(supervision, mapping):
    semantic = _semantic()
    branch = _branch(supervision)
    centre = SEMANTIC_STRIDE // 2
    sampled = semantic[:, centre::SEMANTIC_STRIDE, centre::SEMANTIC_STRIDE]
    expected = np.vectorize(lambda v: mapping.get(int(v), IGNORE_LABEL))(sampled)
    np.testing.assert_array_equal(branch.labels(tf.constant(semantic)), expected)
    assert branch.num_classes == (THINGS + STUFF if supervision == "all" else STUFF + 1)


def test_loss_is_the_mean_cross_entropy_of_labelled_cells():
    branch = _branch("all")
    semantic = _semantic(1)
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, H // 4, W // 4, THINGS + STUFF)).astype(np.float32)
    labels = branch.labels(tf.constant(semantic)).numpy()
    valid = labels != IGNORE_LABEL
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_softmax, np.where(valid, labels, 0)[..., None], -1)[..., 0]
    assert float(branch.loss(tf.constant(logits), tf.constant(semantic))) == pytest.approx(
        ce[valid].mean(), rel=1e-5)


@pytest.mark.parametrize("supervision, first_stuff", [("all", THINGS), ("stuff_plus_things", 1)])
def test_probabilities_are_the_softmax_of_the_stuff_channels(supervision, first_stuff):
    branch = _branch(supervision)
    values = np.arange(branch.num_classes, dtype=np.float32)  # channel k holds k everywhere
    logits = tf.broadcast_to(tf.constant(values), [1, H // 4, W // 4, branch.num_classes])
    probs = branch.probabilities(logits, (H, W)).numpy()
    stuff = values[first_stuff:first_stuff + STUFF]
    expected = np.exp(stuff) / np.exp(stuff).sum()
    assert probs.shape == (1, H, W, STUFF)
    np.testing.assert_allclose(probs, np.broadcast_to(expected, probs.shape), rtol=1e-6)


def test_logits_shape_and_round_trip():
    branch = _branch("stuff_plus_things")
    logits = round_trip(branch, pyramid(levels=5))
    assert tuple(logits.shape) == (2, H // 4, W // 4, STUFF + 1)


def test_unknown_supervision_is_refused():
    with pytest.raises(ValueError, match="stuff supervision"):
        _branch("things_only")
