"""The parts of our batch-1 inference and train step timed alone, each through the model's
public components (model.rpn, model.roi_heads, model.stuff_branch, model.srm) on our model's
own outputs, so a part is timed as the model runs it."""

from __future__ import annotations

from harness.inputs import random_images, random_instances
from harness.model_bench import OursBench
from harness.report import row
from harness.timing import graph_function, interleaved, median

SUITE = "breakdown"
# Parts of OANet.detect timed alone (the rest of detect is their difference).
DETECT_PARTS = ("dense", "roi_align_box", "box_head", "roi_align_mask", "mask_head",
                "paste_masks", "srm_inputs", "srm", "ranking_scores", "stuff_probabilities")
# The parts computed as differences, and the peer's part.
REST_OF_DETECT, DENSE_HEADS, REST_OF_STEP = "rest of detect", "dense heads", "rest of step"
PEER_BACKBONE_FPN = "torchvision_backbone_fpn"
NOTES = {REST_OF_DETECT: "proposals, NMS, box decoding (detect - its timed parts)",
         DENSE_HEADS: "RPN head + stuff head (dense - backbone_fpn)",
         REST_OF_STEP: "proposals, matching, sampling, losses, update (step - pieces)"}


def _fetched(function, *args):
    """A zero-argument call of function(*args) that waits for every output."""
    import tensorflow as tf

    return lambda: tf.nest.map_structure(lambda t: t.numpy(), function(*args))


def part_calls(bench: OursBench, seed) -> dict:
    """{part: zero-argument callable} for the inference breakdown, batch 1: backbone+FPN,
    the dense part, detect, the whole predictor, RoIAlign and the box head at the test
    proposals, RoIAlign and the mask head at the detections, paste_masks, the SRM and its
    inputs, the ranking scores, the stuff probabilities and the merge."""
    import numpy as np
    import tensorflow as tf

    from oanet_tf.modeling import srm_layer as srm_lib
    from oanet_tf.ops import mask_ops

    model = bench.model
    roi_heads = model.roi_heads
    height, width = bench.size
    images = tf.constant(random_images(seed, 1, height, width))
    size = tf.constant(np.array([[height, width]], np.int32))
    dense = graph_function(lambda x: model(x, training=False))
    detect = graph_function(model.detect)
    detections = detect(images, size)
    outputs = dense(images)
    features = outputs["features"]
    # The box head's input: as many boxes as proposals, spread over the image.
    proposals = tf.constant(random_instances(
        seed, 1, height, width, model.rpn.post_nms_topk_test, 1)[0])

    def pool(boxes, resolution):  # the model's own RoIAlign
        return roi_heads.roi_align(features, boxes, resolution)

    box_pooled = pool(proposals, roi_heads.box_pooler_resolution)
    mask_pooled = pool(detections["boxes"], roi_heads.mask_pooler_resolution)
    binary = tf.cast(detections["instance_masks"] >= srm_lib.MASK_THRESHOLD, tf.float32)
    channels, _ = srm_lib.srm_inputs(binary, detections["classes"], model.num_things)
    functions = {
        "backbone_fpn": (graph_function(lambda x: model.fpn(model.backbone(x))), (images,)),
        "dense": (dense, (images,)),
        "detect": (detect, (images, size)),
        "full": (bench.predictor(), (images, size, size)),
        "merge": (bench.merge_only(detections), (images, size, size)),
        "roi_align_box": (graph_function(lambda b: pool(b, roi_heads.box_pooler_resolution)),
                          (proposals,)),
        "box_head": (graph_function(lambda p: roi_heads.box_head(p, training=False)),
                     (box_pooled,)),
        "roi_align_mask": (graph_function(
            lambda b: pool(b, roi_heads.mask_pooler_resolution)), (detections["boxes"],)),
        "mask_head": (graph_function(lambda p: roi_heads.mask_head(p, training=False)),
                      (mask_pooled,)),
        "paste_masks": (graph_function(lambda m, b: mask_ops.paste_masks(m, b, bench.size)),
                        (detections["masks"], detections["boxes"])),
        "srm_inputs": (graph_function(lambda m, c: srm_lib.srm_inputs(m, c, model.num_things)),
                       (binary, detections["classes"])),
        "srm": (graph_function(model.srm.ranking_map), (channels,)),  # as detect runs it
        "ranking_scores": (graph_function(srm_lib.ranking_scores),
                           (detections["ranking_map"], binary, detections["classes"])),
        "stuff_probabilities": (graph_function(
            lambda logits: model.stuff_branch.probabilities(logits, bench.size)),
            (outputs["semantic_logits"],)),
    }
    return {name: _fetched(function, *args) for name, (function, args) in functions.items()}


def _gradients(forward, sources, watch=False):
    """Gradients of the sum of forward()'s outputs w.r.t. sources; watch: sources are
    tensors, not variables."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        if watch:
            tape.watch(sources)
        total = tf.add_n([tf.reduce_sum(tf.cast(t, tf.float32))
                          for t in tf.nest.flatten(forward())])
    return [g for g in tf.nest.flatten(tape.gradient(total, sources)) if g is not None]


def train_part_calls(bench: OursBench, seed, instances) -> dict:
    """{part: zero-argument callable} for the train-step breakdown, batch 1: forward and
    backward (gradients of the summed outputs) of each piece alone, at the sizes of the
    step (sampled RoIs for the box head, the most positives for the mask head)."""
    import tensorflow as tf

    from oanet_tf.ops import mask_ops

    model = bench.model
    roi_heads = model.roi_heads
    data = bench.train_batch(1, seed, instances)
    bench.prepare("train", 1, seed, instances)
    features = model(data["images"], training=False)["features"]
    rois = roi_heads.batch_size_per_image
    positives = int(rois * roi_heads.positive_fraction)
    box_rois = tf.constant(random_instances(seed, 1, *bench.size, rois, 1)[0])
    mask_rois = box_rois[:, :positives]
    box_resolution, mask_resolution = (roi_heads.box_pooler_resolution,
                                       roi_heads.mask_pooler_resolution)
    box_pooled = roi_heads.roi_align(features, box_rois, box_resolution)
    mask_pooled = roi_heads.roi_align(features, mask_rois, mask_resolution)
    dense_variables = [v for layer in (model.backbone, model.fpn, model.rpn.head,
                                       model.stuff_branch.head)
                       for v in layer.trainable_variables]

    def srm_loss():  # the model's own path (sparse without static shapes)
        return model.srm.loss(data["gt_masks"], tf.cast(data["gt_classes"], tf.int32),
                              data["owner"])

    functions = {
        "dense_fwd_bwd": lambda: _gradients(
            lambda: model(data["images"], training=True), dense_variables),
        "roi_align_box_fwd_bwd": lambda: _gradients(
            lambda: roi_heads.roi_align(features, box_rois, box_resolution), features, True),
        "box_head_fwd_bwd": lambda: _gradients(
            lambda: roi_heads.box_head(box_pooled, training=True),
            roi_heads.box_head.trainable_variables),
        "roi_align_mask_fwd_bwd": lambda: _gradients(
            lambda: roi_heads.roi_align(features, mask_rois, mask_resolution), features, True),
        "mask_head_fwd_bwd": lambda: _gradients(
            lambda: roi_heads.mask_head(mask_pooled, training=True),
            roi_heads.mask_head.trainable_variables),
        "mask_targets": lambda: mask_ops.mask_targets(
            data["gt_masks"], tf.zeros([1, positives], tf.int32), mask_rois),
        "srm_inputs_srm_loss_fwd_bwd": lambda: _gradients(
            srm_loss, model.srm.trainable_variables),
    }
    return {"train_step": bench.call,
            **{name: _fetched(graph_function(function)) for name, function in functions.items()}}


def inference_breakdown(bench: OursBench, peer, seed, warmup, repeats) -> dict:
    """Median seconds of each part of our batch-1 inference, and the peer's backbone + FPN
    (peer: a TorchClient, or None) as PEER_BACKBONE_FPN."""
    result = {}
    for name, call in part_calls(bench, seed).items():
        peer_time = None
        if name == "backbone_fpn" and peer is not None:
            peer.prepare("backbone_fpn", bench.size, 1, seed, 0, 0)
            peer_time = peer.time
        ours, theirs = interleaved(call, peer_time, warmup, repeats)
        result[name] = median(ours)
        if theirs:
            result[PEER_BACKBONE_FPN] = median(theirs)
    result[REST_OF_DETECT] = result["detect"] - sum(result[k] for k in DETECT_PARTS)
    result[DENSE_HEADS] = result["dense"] - result["backbone_fpn"]
    return result


def train_breakdown(bench: OursBench, seed, instances, warmup, repeats) -> dict:
    """Median seconds of our batch-1 train step and of its heaviest pieces alone."""
    result = {name: median(interleaved(call, None, warmup, repeats)[0])
              for name, call in train_part_calls(bench, seed, instances).items()}
    pieces = [name for name in result if name != "train_step"]
    result[REST_OF_STEP] = result["train_step"] - sum(result[k] for k in pieces)
    return result


def breakdown_rows(size, inference: dict, train: dict) -> list:
    """benchmark.py's rows of the two breakdowns (either may be empty), seconds at batch 1;
    our backbone_fpn beside torchvision's when it was timed."""
    rows = []
    peer = inference.get(PEER_BACKBONE_FPN)
    for what, parts in (("infer", inference), ("train", train)):
        for name, seconds in parts.items():
            if name == PEER_BACKBONE_FPN:
                continue
            beside = name == "backbone_fpn" and peer is not None
            rows.append(row(SUITE, f"{what} {name}", size, 1, "s", seconds,
                            peer if beside else None, "torchvision" if beside else "",
                            peer / seconds if beside else None, note=NOTES.get(name, "")))
    return rows
