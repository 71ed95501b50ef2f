"""The RoI heads component: sampling and the class, box and mask losses by hand, detection
post-processing invariants, RoIAlign's levels, config round trip."""

import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.modeling.roi_heads import RoIHeads
from oanet_tf.ops import mask_ops, roi_align
from tests.modeling.layer_checks import H, W, pyramid

THINGS = 2
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def _heads(static_shapes=False, **overrides):
    settings = dict(num_things=THINGS, box_head_fc_dim=16, box_head_num_fc=2,
                    mask_head_conv_dim=8, mask_head_num_conv=1, batch_size_per_image=1000,
                    positive_fraction=1.0, iou_threshold=0.5, box_coder_weights=BOX_WEIGHTS,
                    box_pooler_resolution=7, mask_pooler_resolution=14,
                    pooler_sampling_ratio=2, test_score_threshold=0.05,
                    test_nms_threshold=0.5, detections_per_image=6,
                    static_shapes=static_shapes)
    heads = RoIHeads(**{**settings, **overrides})
    heads.build((None, H // 4, W // 4, 8))
    return heads


def _encode(box, roi):
    """Box deltas of `box` against `roi` with the box coder weights (numpy)."""
    h, w = box[2] - box[0], box[3] - box[1]
    rh, rw = roi[2] - roi[0], roi[3] - roi[1]
    return np.array([BOX_WEIGHTS[0] * (box[0] + h / 2 - roi[0] - rh / 2) / rh,
                     BOX_WEIGHTS[1] * (box[1] + w / 2 - roi[1] - rw / 2) / rw,
                     BOX_WEIGHTS[2] * np.log(h / rh), BOX_WEIGHTS[3] * np.log(w / rw)])


@pytest.mark.parametrize("static_shapes", [False, True])
def test_losses_by_hand(static_shapes):
    """Proposals: near the ground truth (IoU 0.88, positive), far (negative), IoU 0.33
    (negative) and one padding row; the ground-truth box joins as a positive."""
    heads = _heads(static_shapes)
    features = pyramid(levels=5, batch=1)
    gt = np.array([[[8, 16, 40, 56], [0, 0, 0, 0]]], np.float32)
    gt_classes = np.array([[2, 0]], np.int32)
    proposals = np.array([[[10, 16, 42, 56], [44, 80, 60, 120], [8, 36, 40, 76],
                           [0, 0, 0, 0]]], np.float32)
    proposal_valid = np.array([[True, True, True, False]])
    gt_masks = np.zeros((1, 2, H, W), np.uint8)
    gt_masks[0, 0, 10:38, 20:50] = 1
    losses = heads.losses(features, tf.constant(proposals), tf.constant(proposal_valid),
                          tf.constant(gt), tf.constant(gt_classes), tf.constant(gt_masks),
                          seed=tf.constant([0, 0]))

    rois = np.concatenate([proposals[0, :3], gt[0, :1]])  # every labelled RoI
    classes = np.array([2, 0, 0, 2])
    logits, deltas = (t.numpy()[0] for t in heads.box_head(
        heads.roi_align(features, tf.constant(rois[None]), 7)))
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    cls = -log_softmax[np.arange(4), classes].mean()
    positives = [0, 3]
    box = sum(np.abs(deltas[i, 1] - _encode(gt[0, 0], rois[i])).sum() for i in positives) / 4
    mask_logits = heads.mask_head(heads.roi_align(features, tf.constant(rois[positives][None]),
                                                  14)).numpy()[0, ..., 1]  # class 2
    targets = mask_ops.mask_targets(tf.constant(gt_masks), tf.zeros([1, 2], tf.int32),
                                    tf.constant(rois[positives][None]), size=28).numpy()[0]
    bce = np.maximum(mask_logits, 0) - mask_logits * targets + np.log1p(
        np.exp(-np.abs(mask_logits)))
    assert float(losses["cls"]) == pytest.approx(cls, rel=1e-4)
    assert float(losses["box"]) == pytest.approx(box, rel=1e-4)
    assert float(losses["mask"]) == pytest.approx(bce.mean(), rel=1e-4)


def test_detections_are_scored_sorted_inside_the_image_and_padded():
    heads = _heads(test_score_threshold=0.3)
    features = pyramid(levels=5, batch=2)
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, [H, W], size=(2, 30, 2, 2))
    proposals = np.concatenate([corners.min(2), corners.max(2)], axis=-1).astype(np.float32)
    out = {k: v.numpy() for k, v in heads.detect(
        features, tf.constant(proposals), tf.ones([2, 30], tf.bool), [(H, W)] * 2).items()}
    for b in range(2):
        count = out["num_detections"][b]
        assert count == np.count_nonzero(out["classes"][b])
        valid = slice(0, count)
        assert np.all(out["scores"][b, valid] >= 0.3)
        assert np.all(np.diff(out["scores"][b, valid]) <= 0)
        assert np.all((out["classes"][b, valid] >= 1) & (out["classes"][b, valid] <= THINGS))
        assert np.all(out["boxes"][b] >= 0) and np.all(out["boxes"][b, :, 2] <= H)
        assert np.all(out["boxes"][b, :, 3] <= W)
        assert np.all(out["scores"][b, count:] == 0) and np.all(out["masks"][b, count:] == 0)
    assert out["num_detections"].sum() > 0  # random heads score above 1 / (T + 1)


def test_roi_align_reads_p2_to_p5_only():
    heads = _heads()
    features = pyramid(levels=5, batch=1)
    boxes = tf.constant([[[4.0, 8.0, 60.0, 120.0], [2.0, 2.0, 10.0, 12.0]]])
    pooled = heads.roi_align(features, boxes, 7)
    np.testing.assert_allclose(
        pooled, roi_align.multilevel_roi_align(features[:4], boxes, 7, sampling_ratio=2,
                                               min_level=2, method="crop_and_resize"),
        atol=1e-6)
    changed = features[:4] + [features[4] + 1.0]
    np.testing.assert_array_equal(heads.roi_align(changed, boxes, 7), pooled)


def test_config_round_trip():
    heads = _heads()
    clone = RoIHeads.from_config(heads.get_config())
    assert clone.get_config() == heads.get_config()
    clone.build((None, H // 4, W // 4, 8))
    assert [w.shape for w in clone.weights] == [w.shape for w in heads.weights]
