"""The contract of the oanet_tf.ops package (its docstring): the ops together trace once in
tf.function, compile with XLA (all but nms.multiclass_nms) and run under tf.distribute."""

import numpy as np
import tensorflow as tf

from oanet_tf.ops import anchors as anchors_lib
from oanet_tf.ops import box_coder, iou, mask_ops, matcher, nms, roi_align, sampling
from tests.ops.random_inputs import RATIOS, _pyramid


IMAGE = (64, 64)


def _pipeline(features, gt_boxes, gt_masks, gt_valid, scores, seed):
    """A small training-and-inference pass through every XLA-compilable op."""
    anchors = tf.concat(anchors_lib.multilevel_anchors(IMAGE, 2, 3, (16, 32), RATIOS), 0)
    batch_anchors = tf.broadcast_to(anchors, [2] + anchors.shape.as_list())
    overlaps = iou.pairwise_iou(batch_anchors, gt_boxes)
    matched, labels = matcher.match_boxes(overlaps, gt_valid, 0.3, 0.7, True)
    sampled = sampling.sample_balanced(labels, 32, 0.5, seed=seed)
    deltas = box_coder.encode_boxes(tf.gather(gt_boxes, matched, batch_dims=1), batch_anchors)
    decoded = box_coder.clip_boxes(box_coder.decode_boxes(deltas, batch_anchors), IMAGE)
    boxes, _, index, count = nms.batched_nms(decoded, scores, 10, 0.7)
    pooled = roi_align.multilevel_roi_align(features, boxes, 4)
    targets = mask_ops.mask_targets(gt_masks, tf.gather(matched, index, batch_dims=1), boxes, 8)
    pasted = mask_ops.paste_masks(targets, boxes, IMAGE)
    return {"sampled": tf.reduce_sum(tf.cast(sampled, tf.int32)), "count": count,
            "boxes": boxes, "pooled": pooled, "targets": targets, "pasted": pasted}


def _pipeline_inputs():
    rng = np.random.default_rng(11)
    features = [tf.constant(f) for f in _pyramid(rng, image=64, levels=(2, 3, 4, 5))]
    gt_boxes = np.array([[[4, 4, 30, 40], [20, 30, 60, 62], [0, 0, 0, 0]]] * 2, np.float32)
    masks = np.zeros((2, 3, 64, 64), np.uint8)
    masks[:, 0, 4:30, 4:40] = 1
    masks[:, 1, 20:60, 30:62] = 1
    num_anchors = (16 * 16 + 8 * 8) * 3
    scores = rng.permutation(2 * num_anchors).reshape(2, num_anchors).astype(np.float32)
    return (features, tf.constant(gt_boxes), tf.constant(masks),
            tf.constant([[True, True, False]] * 2), tf.constant(scores))


def test_pipeline_traces_once_and_compiles_with_xla():
    traces = []

    def counted(*args):
        traces.append(1)
        return _pipeline(*args)

    inputs = _pipeline_inputs()
    seed = tf.constant([3, 4])
    eager = _pipeline(*inputs, seed)
    graph = tf.function(counted)
    graph(*inputs, seed)
    graph(*inputs, seed + 1)
    assert len(traces) == 1
    compiled = tf.function(_pipeline, jit_compile=True)(*inputs, seed)
    assert int(eager["count"][0]) > 0 and int(eager["sampled"]) > 0
    for key in ("sampled", "count", "targets"):
        np.testing.assert_array_equal(compiled[key], eager[key], err_msg=key)
    for key in ("boxes", "pooled", "pasted"):
        np.testing.assert_allclose(compiled[key], eager[key], atol=1e-4, err_msg=key)


def test_ops_run_under_tf_distribute():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    features, gt_boxes, gt_masks, gt_valid, scores = _pipeline_inputs()

    @tf.function
    def step():
        def replica_fn():
            out = _pipeline(features, gt_boxes, gt_masks, gt_valid, scores, seed=0)
            class_boxes = tf.tile(out["boxes"][:, :, None, :], [1, 1, 2, 1])
            class_scores = tf.random.stateless_uniform([2, 10, 2], seed=[0, 0])
            return out["count"], nms.multiclass_nms(class_boxes, class_scores, 5, 5, 0.5, 0.1)[3]
        return strategy.run(replica_fn)

    with strategy.scope():
        count, detections = step()
    eager = _pipeline(features, gt_boxes, gt_masks, gt_valid, scores, seed=(0, 0))
    np.testing.assert_array_equal(strategy.experimental_local_results(count)[0], eager["count"])
    assert (strategy.experimental_local_results(detections)[0].numpy() > 0).all()
