"""The RPN component: proposal selection and both losses against numpy, gradients, config."""

import math

import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.modeling.rpn import RPN
from tests import numpy_reference as ref
from tests.modeling.layer_checks import round_trip

IMAGE = (64, 96)
RATIOS = (0.5, 1.0, 2.0)
SIZES = (16, 32, 64, 128, 256)
CHANNELS = 8
NMS_THRESHOLD = 0.6
DELTA_CLIP = math.log(1000.0 / 16)  # Faster R-CNN's clamp of dh, dw


def _rpn(static_shapes=False, **overrides):
    settings = dict(conv_channels=CHANNELS, anchor_sizes=SIZES, anchor_aspect_ratios=RATIOS,
                    iou_thresholds=(0.3, 0.7), batch_size_per_image=256, positive_fraction=0.5,
                    pre_nms_topk_train=40, post_nms_topk_train=30, pre_nms_topk_test=20,
                    post_nms_topk_test=15, nms_threshold=NMS_THRESHOLD,
                    static_shapes=static_shapes)
    return RPN(**{**settings, **overrides})


def _np_iou(a, b):
    """a [N, 4], b [M, 4] (y1, x1, y2, x2) -> [N, M]"""
    h = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]),
                0, None)
    w = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]),
                0, None)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - h * w
    return np.where(union > 0, h * w / np.where(union > 0, union, 1), 0.0)


def _np_decode(deltas, anchors):
    ha, wa = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    cy, cx = anchors[:, 0] + ha / 2 + deltas[:, 0] * ha, anchors[:, 1] + wa / 2 + deltas[:, 1] * wa
    h = np.exp(np.minimum(deltas[:, 2], DELTA_CLIP)) * ha
    w = np.exp(np.minimum(deltas[:, 3], DELTA_CLIP)) * wa
    return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)


def _np_proposals(logits, deltas, anchors, level_sizes, pre, post, image=IMAGE,
                  per_level=True):
    """One image: top `pre` per level, decoded and clipped, empty boxes dropped, greedy NMS
    per level (or over all levels), then the best `post` over all levels -> boxes, scores."""
    boxes, scores, levels, start = [], [], [], 0
    for level, size in enumerate(level_sizes):
        top = np.argsort(-logits[start:start + size])[:pre] + start
        decoded = _np_decode(deltas[top], anchors[top])
        boxes.append(np.clip(decoded, 0, [image[0], image[1], image[0], image[1]]))
        scores.append(logits[top])
        levels.append(np.full(len(top), level))
        start += size
    boxes, scores, levels = np.concatenate(boxes), np.concatenate(scores), np.concatenate(levels)
    nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores, levels = boxes[nonempty], scores[nonempty], levels[nonempty]
    groups = [np.flatnonzero(levels == g) for g in np.unique(levels)] if per_level \
        else [np.arange(len(scores))]
    kept = np.concatenate([g[ref.greedy_nms(boxes[g], scores[g], NMS_THRESHOLD,
                                            float("-inf"), len(g))] for g in groups])
    kept = kept[np.argsort(-scores[kept], kind="stable")][:post]
    return boxes[kept], scores[kept]


def _head_outputs(rpn, seed):
    anchors, _ = rpn.anchors(IMAGE)
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(2, anchors.shape[0])).astype(np.float32)
    deltas = (rng.normal(size=(2, anchors.shape[0], 4)) * 0.3).astype(np.float32)
    return logits, deltas


@pytest.mark.parametrize("static_shapes", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_proposals_match_numpy(static_shapes, training):
    rpn = _rpn(static_shapes)
    logits, deltas = _head_outputs(rpn, seed=int(training))
    boxes, scores, valid = (t.numpy() for t in rpn.proposals(logits, deltas, IMAGE, [IMAGE] * 2, training))
    anchors, level_sizes = (np.asarray(x) for x in rpn.anchors(IMAGE))
    pre = rpn.pre_nms_topk_train if training else rpn.pre_nms_topk_test
    post = rpn.post_nms_topk_train if training else rpn.post_nms_topk_test
    assert boxes.shape == (2, post, 4)
    for b in range(2):
        expected, _ = _np_proposals(logits[b], deltas[b], anchors, level_sizes, pre, post)
        assert valid[b].sum() == len(expected)
        np.testing.assert_allclose(boxes[b, :len(expected)], expected, atol=1e-3)
        assert np.all(np.diff(scores[b, :len(expected)]) <= 0)  # best first


def _hand_built_head_outputs(rpn):
    """Head outputs of one image where per-level and global NMS differ and the best-scoring
    proposal is empty: all logits low and random, deltas 0, except three anchors.

    A (P2 anchor, logit 5) and B (P3 anchor, logit 4) decode to two boxes of IoU 0.8 > the
    NMS threshold: a global NMS drops B, NMS per level keeps both. E (P4 anchor, logit 6)
    decodes to a box beyond the image's bottom edge: empty once clipped.
    """
    anchors, level_sizes = (np.asarray(x) for x in rpn.anchors(IMAGE))
    starts = np.cumsum([0, *level_sizes])
    rng = np.random.default_rng(7)
    logits = rng.uniform(-10.0, -5.0, size=len(anchors)).astype(np.float32)
    deltas = np.zeros((len(anchors), 4), np.float32)
    a, b, e = starts[0] + 100 * len(RATIOS) + 1, starts[1] + 20 * len(RATIOS) + 1, starts[2] + 1
    box_a = np.array([10.0, 20.0, 40.0, 50.0])
    box_b = np.array([10.0, 20.0, 40.0, 50.0 * 0.8 + 20.0 * 0.2])  # A's width x 0.8 inside A
    box_e = np.array([IMAGE[0] + 10.0, 10.0, IMAGE[0] + 30.0, 30.0])
    for index, box, logit in ((a, box_a, 5.0), (b, box_b, 4.0), (e, box_e, 6.0)):
        deltas[index] = ref.encode(box, anchors[index], (1.0, 1.0, 1.0, 1.0))
        logits[index] = logit
    return logits[None], deltas[None], (box_a, box_b), anchors, level_sizes


@pytest.mark.parametrize("static_shapes", [False, True])
def test_nms_per_level_keeps_overlapping_boxes_of_two_levels_and_drops_empty_ones(
        static_shapes):
    rpn = _rpn(static_shapes, pre_nms_topk_test=3, post_nms_topk_test=12)
    logits, deltas, (box_a, box_b), anchors, level_sizes = _hand_built_head_outputs(rpn)
    assert ref.iou(box_a, box_b) > NMS_THRESHOLD
    boxes, scores, valid = (t.numpy()[0] for t in rpn.proposals(logits, deltas, IMAGE, [IMAGE],
                                                               training=False))
    expected, expected_scores = _np_proposals(logits[0], deltas[0], anchors, level_sizes, 3, 12)
    global_nms, _ = _np_proposals(logits[0], deltas[0], anchors, level_sizes, 3, 12,
                                  per_level=False)
    assert len(global_nms) < len(expected)  # the case tells the two apart
    assert valid.sum() == len(expected)
    np.testing.assert_allclose(boxes[valid], expected, atol=1e-3)
    np.testing.assert_allclose(scores[valid], expected_scores, atol=1e-6)
    np.testing.assert_allclose(boxes[:2], [box_a, box_b], atol=1e-3)  # best first, both kept
    sides = boxes[valid][:, 2:] - boxes[valid][:, :2]
    assert np.all(sides > 0) and not np.any(scores[valid] == 6.0)  # E is gone


def test_proposals_of_a_graph_with_unknown_sizes_equal_the_eager_ones():
    """Padded size and anchor count known only when the graph runs, two image sizes."""
    rpn = _rpn()
    logits, deltas = _head_outputs(rpn, seed=4)
    sizes = np.array([[40, 96], [64, 50]], np.int32)
    graph = tf.function(
        lambda lg, dl, canvas, size: rpn.proposals(lg, dl, (canvas[0], canvas[1]), size,
                                                   training=False),
        input_signature=[tf.TensorSpec([None, None], tf.float32),
                         tf.TensorSpec([None, None, 4], tf.float32),
                         tf.TensorSpec([2], tf.int32), tf.TensorSpec([None, 2], tf.int32)])
    eager = rpn.proposals(logits, deltas, IMAGE, sizes, training=False)
    for got, want in zip(graph(logits, deltas, tf.constant(IMAGE), sizes), eager):
        np.testing.assert_array_equal(got, want)
    anchors, level_sizes = (np.asarray(x) for x in rpn.anchors(IMAGE))
    for b in range(2):
        expected, _ = _np_proposals(logits[b], deltas[b], anchors, level_sizes,
                                    rpn.pre_nms_topk_test, rpn.post_nms_topk_test, sizes[b])
        np.testing.assert_allclose(eager[0].numpy()[b][eager[2].numpy()[b]], expected, atol=1e-3)


def test_no_gradient_flows_into_proposals():
    rpn = _rpn()
    logits, deltas = (tf.constant(t) for t in _head_outputs(rpn, seed=2))
    with tf.GradientTape() as tape:
        tape.watch([logits, deltas])
        boxes, _, _ = rpn.proposals(logits, deltas, IMAGE, [IMAGE] * 2, training=True)
        total = tf.reduce_sum(boxes)
    assert all(g is None for g in tape.gradient(total, [logits, deltas]))


@pytest.mark.parametrize("image_size", [IMAGE, (40, 60)])
def test_losses_by_hand_with_every_labelled_anchor_sampled(image_size):
    """A ground-truth box equal to one anchor: that anchor is the only positive; zero logits
    give log 2 per labelled anchor, zero deltas an L1 equal to the targets' sum. Anchors
    centred beyond the image's own size (in the batch's padding) are not labelled."""
    rpn = _rpn(batch_size_per_image=100000, positive_fraction=1.0)
    anchors, _ = rpn.anchors(IMAGE)
    anchors = anchors.numpy()
    gt = anchors[100 * len(RATIOS) + 1][None]  # a P2 anchor inside both image sizes
    iou = _np_iou(anchors, gt)[:, 0]
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    inside = np.all(centres < image_size, axis=1)
    assert 0 < inside.sum() < len(anchors) and inside[100 * len(RATIOS) + 1]
    positive = ((iou >= 0.7) | (iou == iou.max())) & inside
    labelled = positive | ((iou < 0.3) & inside)
    # Encoded targets of the positives (unit weights), L1 against zero deltas.
    ha, wa = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    gh, gw = gt[0, 2] - gt[0, 0], gt[0, 3] - gt[0, 1]
    targets = np.stack([(gt[0, 0] + gh / 2 - anchors[:, 0] - ha / 2) / ha,
                        (gt[0, 1] + gw / 2 - anchors[:, 1] - wa / 2) / wa,
                        np.log(gh / ha), np.log(gw / wa)], axis=-1)
    normalizer = rpn.batch_size_per_image  # one image
    losses = rpn.losses(tf.zeros([1, len(anchors)]), tf.zeros([1, len(anchors), 4]),
                        tf.constant(gt[None]), tf.constant([[True]]), IMAGE, [image_size],
                        seed=tf.constant([0, 0]))
    assert float(losses["rpn_cls"]) == pytest.approx(
        labelled.sum() * math.log(2.0) / normalizer, rel=1e-5)
    assert float(losses["rpn_box"]) == pytest.approx(
        np.abs(targets[positive]).sum() / normalizer, rel=1e-4, abs=1e-9)


def test_proposals_stay_inside_each_image():
    """Two images of one padded batch, of different sizes: each image's proposals are clipped
    to its own size, not to the batch's."""
    rpn = _rpn()
    logits, deltas = _head_outputs(rpn, seed=3)
    sizes = np.array([[40, 96], [64, 50]], np.float32)
    boxes, _, valid = (t.numpy() for t in rpn.proposals(logits, deltas * 10, IMAGE, sizes,
                                                        training=False))
    for b in range(2):
        kept = boxes[b][valid[b]]
        assert len(kept) and kept.min() >= 0
        assert kept[:, 2].max() <= sizes[b, 0] and kept[:, 3].max() <= sizes[b, 1]
    assert boxes[0][valid[0]][:, 2].max() == sizes[0, 0]  # some reach the image's edge


def test_anchors_of_a_size_known_only_when_the_graph_runs_equal_the_static_ones():
    rpn = _rpn()
    static, static_levels = rpn.anchors(IMAGE)
    dynamic = tf.function(lambda size: rpn.anchors((size[0], size[1]))[0],
                          input_signature=[tf.TensorSpec([2], tf.int32)])
    np.testing.assert_array_equal(dynamic(tf.constant(IMAGE)), static)
    assert all(isinstance(n, int) for n in static_levels)  # static sizes stay static


def test_head_outputs_follow_the_anchors_and_round_trip():
    rpn = _rpn()
    features = [tf.random.normal([2, math.ceil(IMAGE[0] / 2 ** l), math.ceil(IMAGE[1] / 2 ** l),
                                  CHANNELS], seed=l) for l in range(2, 7)]
    logits, deltas = round_trip(rpn, features)
    anchors, _ = rpn.anchors(IMAGE)
    assert tuple(logits.shape) == (2, anchors.shape[0])
    assert tuple(deltas.shape) == (2, anchors.shape[0], 4)
