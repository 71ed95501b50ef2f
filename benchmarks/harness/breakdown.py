"""Where the time goes: each stage of our batch-1 inference and of our train step timed
alone, through the model's public components (model.backbone, model.fpn, model.rpn,
model.roi_heads, model.stuff_branch, model.srm) on our model's own outputs, so a stage is
timed as the model runs it; beside each convolutional stage its multiply-adds (harness.flops,
from the layers' shapes as the run calls them) and its achieved rate against the ResNet
trunk's (the backbone) in the same run.

Inference (batch 1, one model per precision): the stages below, the whole predictor (detect +
merge, its panoptic outputs as served: the image-sized instance_masks and ranking_map, which
serving does not return, are not computed) as WHOLE, and REMAINDER = WHOLE - the stages (what
joins them); box_selection (the box
decoding and class-wise NMS of RoIHeads.detect) is RoIHeads.detect timed whole minus its
RoIAlign and heads. The box head runs on the RPN's proposals of the
run, the mask head on the detection slots (detections_per_image; how many hold a detection is
in the note), the SRM on the cells it computes (see srm_macs).

Train step (a COCO-sized batch of TRAIN_BATCH: a batch-1 backward pass crashes oneDNN's
Conv2DBackpropFilter on some CPUs): each stage's forward + backward (gradients of its summed
outputs w.r.t. its trainable variables, or its input for RoIAlign); multiply-adds
FWD_BWD_FACTOR times the forward's.
"""

from __future__ import annotations

from harness.flops import traced_macs
from harness.inputs import random_images, random_instances
from harness.model_bench import OursBench
from harness.report import row
from harness.timing import graph_function, interleaved, median, timed_calls

SUITE = "breakdown"
TRUNK = "backbone"  # the ResNet trunk: the reference rate
WHOLE, REMAINDER = "whole", "remainder"
INFERENCE_STAGES = ("backbone", "fpn", "rpn_head", "stuff_head", "stuff_probabilities",
                    "proposals", "roi_align_box", "box_head", "box_selection",
                    "roi_align_mask", "mask_head", "mask_pixels", "srm_inputs", "srm",
                    "ranking_scores", "merge")
# box_selection (the box decoding, class-wise NMS and mask-logit gather of RoIHeads.detect)
# is ROI_HEADS, RoIHeads.detect timed whole, minus the ROI_HEADS_PARTS timed alone.
ROI_HEADS = "roi_heads"
ROI_HEADS_PARTS = ("roi_align_box", "box_head", "roi_align_mask", "mask_head")
TRAIN_STAGES = ("backbone", "fpn", "rpn_head", "stuff_head", "roi_align_box", "box_head",
                "roi_align_mask", "mask_head", "mask_targets", "srm_loss")
TRAIN_BATCH = 2
# Backward = the input gradients + the weight gradients, each as many multiply-adds as the
# forward (an upper bound where layers are frozen: they skip the weight gradients).
FWD_BWD_FACTOR = 3
NOTES = {"proposals": "RPN decode, top-k, NMS per level",
         "box_selection": "RoIHeads.detect - its RoIAlign and heads: box decoding, "
                          "class-wise NMS, mask-logit gather",
         REMAINDER: "whole - stages",
         "srm_loss": "SRM inputs + loss on the conflict cells, fwd+bwd (MACs not counted)"}
GIGA = 1e9


def _fetched(function, *args):
    """A zero-argument call of function(*args), done when it returns: eager execution is
    synchronous (TensorFlow's default, checked here), so nothing is copied out (`.numpy()` of
    an image-sized output, [1, 800, 1216, 53] stuff probabilities, took longer than computing
    it)."""
    import tensorflow as tf

    if not tf.config.experimental.get_synchronous_execution():
        raise RuntimeError("the breakdown times eager calls: it needs synchronous execution")
    return lambda: function(*args)


def srm_macs(module, channels) -> int:
    """Multiply-adds of SpatialRankingModule.covered_probs on `channels` [B, H, W, P] (0/1,
    numpy, the present categories'): while the covered cells are at most SPARSE_MAX_COVERED
    of the grid, each path's last convolution runs on them and its first on the cells that
    one reads (the covered cells' windows); above, both on every cell (as the module
    decides)."""
    import numpy as np

    from oanet_tf.modeling.srm_layer import GCN_KERNEL, SPARSE_MAX_COVERED

    batch, height, width, present = channels.shape
    stride, things = module.stride, module.num_things
    covered = channels.reshape(batch, height // stride, stride, width // stride, stride,
                               present).any(axis=(2, 4, 5))
    sparse = covered.mean() <= SPARSE_MAX_COVERED

    def cells(window=(1, 1)):  # cells within `window` (centred) of a covered cell
        if not sparse:
            return covered.size
        padded = np.pad(covered, [(0, 0), (window[0] // 2,) * 2, (window[1] // 2,) * 2])
        hit = np.zeros_like(covered)
        for dy in range(window[0]):
            for dx in range(window[1]):
                hit |= padded[:, dy:dy + covered.shape[1], dx:dx + covered.shape[2]]
        return int(hit.sum())

    def conv(layer, count, inputs):
        kh, kw = layer.kernel_size
        return count * kh * kw * inputs * things

    if module.kernel != GCN_KERNEL:
        return conv(module.convs[0], cells(), present)
    left_kx1, left_1xk, right_1xk, right_kx1 = module.convs
    return (conv(left_kx1, cells(left_1xk.kernel_size), present)
            + conv(right_1xk, cells(right_kx1.kernel_size), present)
            + conv(left_1xk, cells(), things) + conv(right_kx1, cells(), things))


def inference_stages(bench: OursBench, seed) -> tuple:
    """({stage: zero-argument callable}, {stage: multiply-adds}, {"detections", "proposals"})
    of batch-1 inference on random images of bench.size; WHOLE: the predictor."""
    import numpy as np
    import tensorflow as tf

    from oanet_tf.modeling import srm_layer as srm_lib
    from oanet_tf.ops import mask_ops
    from oanet_tf.ops.shapes import image_canvas

    model = bench.model
    roi_heads = model.roi_heads
    height, width = bench.size
    images = tf.constant(random_images(seed, 1, height, width))
    size = tf.constant(np.array([[height, width]], np.int32))
    c_features = model.backbone(images)
    features = model.fpn(c_features)
    logits, deltas = model.rpn(features)
    semantic_logits = model.stuff_branch(features)

    def proposals_of(logits, deltas, images, size):  # -> (boxes, valid)
        boxes, _, valid = model.rpn.proposals(logits, deltas, image_canvas(images), size,
                                              training=False)
        return boxes, valid

    proposals, valid = graph_function(proposals_of)(logits, deltas, images, size)
    detections = graph_function(model.detect)(images, size)

    def pool(boxes, resolution):  # the model's own RoIAlign
        return roi_heads.roi_align(features, boxes, resolution)

    box_pooled = pool(proposals, roi_heads.box_pooler_resolution)
    mask_pooled = pool(detections["boxes"], roi_heads.mask_pooler_resolution)
    srm_min_score = bench.predictor().srm_min_score  # the SRM reads what the merge may draw
    srm_classes = detections["classes"]
    if srm_min_score is not None:
        srm_classes = tf.where(detections["scores"] >= srm_min_score, srm_classes, 0)

    def mask_pixels(masks, boxes, classes):
        return mask_ops.RoIMasks(masks, boxes, bench.size).pixels(classes > 0)

    def srm_inputs(pixels, classes):
        return srm_lib.present_inputs(pixels, classes, model.num_things, (1, *bench.size))

    pixels = graph_function(mask_pixels)(detections["masks"], detections["boxes"], srm_classes)
    channels, present = graph_function(srm_inputs)(pixels, srm_classes)
    cells, probs = graph_function(model.srm.module.covered_probs)(channels, present)
    grid = tuple(side // model.srm.stride for side in bench.size)
    functions = {
        "backbone": (lambda x: model.backbone(x), (images,), model.backbone),
        "fpn": (lambda c: model.fpn(c), (c_features,), model.fpn),
        "rpn_head": (lambda f: model.rpn(f), (features,), model.rpn),
        "stuff_head": (lambda f: model.stuff_branch(f), (features,), model.stuff_branch),
        "stuff_probabilities": (lambda s: model.stuff_branch.probabilities(s, bench.size),
                                (semantic_logits,), None),
        "proposals": (proposals_of, (logits, deltas, images, size), None),
        "roi_align_box": (lambda b: pool(b, roi_heads.box_pooler_resolution), (proposals,),
                          None),
        "box_head": (lambda p: roi_heads.box_head(p, training=False), (box_pooled,),
                     roi_heads.box_head),
        "roi_align_mask": (lambda b: pool(b, roi_heads.mask_pooler_resolution),
                           (detections["boxes"],), None),
        "mask_head": (lambda p: roi_heads.mask_head(p, training=False), (mask_pooled,),
                      roi_heads.mask_head),
        "mask_pixels": (mask_pixels, (detections["masks"], detections["boxes"], srm_classes),
                        None),
        "srm_inputs": (srm_inputs, (pixels, srm_classes), None),
        "srm": (model.srm.module.covered_probs, (channels, present), None),  # as detect runs it
        "ranking_scores": (lambda *args: srm_lib.pixel_ranking_scores(
            *args, model.srm.stride, grid), (pixels, cells, probs, srm_classes), None),
    }
    calls, macs = {}, {}
    for name, (function, args, layer) in functions.items():
        calls[name] = _fetched(graph_function(function), *args)
        if layer is not None:
            macs[name] = traced_macs(function, args, layer)
    macs["srm"] = srm_macs(model.srm.module, channels.numpy())
    calls[ROI_HEADS] = _fetched(graph_function(
        lambda p, v: roi_heads.detect(features, p, v, size)), proposals, valid)
    calls["merge"] = _fetched(bench.merge_only(detections), images, size, size)
    calls[WHOLE] = _fetched(bench.predictor().panoptic, images, size, size)
    counts = {"detections": int(detections["num_detections"][0]),
              "detection_slots": int(detections["boxes"].shape[1]),
              "proposals": int(proposals.shape[1])}
    return calls, macs, counts


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


def train_stages(bench: OursBench, seed, instances, image_size, padded_size) -> tuple:
    """({stage: zero-argument callable}, {stage: multiply-adds of forward + backward}, {"rois",
    "mask_rois"}) of the train step on a random batch of TRAIN_BATCH images of image_size
    padded to padded_size, at the step's sizes (sampled RoIs for the box head, the most
    positives for the mask head); WHOLE: the step."""
    import tensorflow as tf

    from oanet_tf.ops import mask_ops

    model = bench.model
    roi_heads = model.roi_heads
    data = bench.train_batch(TRAIN_BATCH, seed, instances, image_size, padded_size)
    bench.prepare_train(data)
    images = data["images"]
    c_features = model.backbone(images, training=True)
    features = model.fpn(c_features, training=True)
    rois = roi_heads.batch_size_per_image
    positives = int(rois * roi_heads.positive_fraction)
    box_rois = tf.constant(random_instances(seed, TRAIN_BATCH, *padded_size, rois, 1)[0])
    mask_rois = box_rois[:, :positives]
    box_resolution, mask_resolution = (roi_heads.box_pooler_resolution,
                                       roi_heads.mask_pooler_resolution)
    box_pooled = roi_heads.roi_align(features, box_rois, box_resolution)
    mask_pooled = roi_heads.roi_align(features, mask_rois, mask_resolution)

    def srm_loss():  # the model's own path (sparse without static shapes)
        return model.srm.loss(data["gt_masks"], tf.cast(data["gt_classes"], tf.int32),
                              data["owner"])

    # stage: (forward of its inputs, its inputs, its layer: gradients w.r.t. its trainable
    # variables (None: w.r.t. its first input))
    forwards = {
        "backbone": (lambda x: model.backbone(x, training=True), (images,), model.backbone),
        "fpn": (lambda c: model.fpn(c, training=True), (c_features,), model.fpn),
        "rpn_head": (lambda f: model.rpn(f, training=True), (features,), model.rpn),
        "stuff_head": (lambda f: model.stuff_branch(f, training=True), (features,),
                       model.stuff_branch),
        "roi_align_box": (lambda f: roi_heads.roi_align(f, box_rois, box_resolution),
                          (features,), None),
        "box_head": (lambda p: roi_heads.box_head(p, training=True), (box_pooled,),
                     roi_heads.box_head),
        "roi_align_mask": (lambda f: roi_heads.roi_align(f, mask_rois, mask_resolution),
                           (features,), None),
        "mask_head": (lambda p: roi_heads.mask_head(p, training=True), (mask_pooled,),
                      roi_heads.mask_head),
    }
    calls, macs = {}, {}
    for name, (forward, args, layer) in forwards.items():
        if layer is None:
            step = (lambda forward=forward, args=args:
                    _gradients(lambda: forward(*args), list(args), True))
        else:
            step = (lambda forward=forward, args=args, layer=layer:
                    _gradients(lambda: forward(*args), layer.trainable_variables))
            macs[name] = FWD_BWD_FACTOR * traced_macs(forward, args, layer)
        calls[name] = _fetched(graph_function(step))
    calls["mask_targets"] = _fetched(graph_function(lambda: mask_ops.mask_targets(
        data["gt_masks"], tf.zeros([TRAIN_BATCH, positives], tf.int32), mask_rois)))
    calls["srm_loss"] = _fetched(graph_function(
        lambda: _gradients(srm_loss, model.srm.trainable_variables)))
    calls[WHOLE] = bench.call
    return calls, macs, {"rois": TRAIN_BATCH * rois, "mask_rois": TRAIN_BATCH * positives}


def timed_stages(calls: dict, warmup, repeats) -> dict:
    """{stage: median seconds} of each call alone, and REMAINDER = WHOLE - the stages. The
    calls go round by round (each stage once a round, the order flipped every round), so
    that every stage and the whole see the same machine load."""
    runs = {name: [] for name in calls}
    for round_index in range(warmup + repeats):
        order = list(calls) if round_index % 2 == 0 else list(calls)[::-1]
        for name in order:
            seconds = timed_calls(calls[name], 1)
            if round_index >= warmup:
                runs[name] += seconds
    seconds = {name: median(values) for name, values in runs.items()}
    if ROI_HEADS in seconds:
        seconds["box_selection"] = seconds.pop(ROI_HEADS) - sum(seconds[name]
                                                                for name in ROI_HEADS_PARTS)
    seconds[REMAINDER] = seconds[WHOLE] - sum(s for name, s in seconds.items()
                                              if name != WHOLE)
    return seconds


def stage_table(seconds: dict, macs: dict) -> dict:
    """{stage: {"seconds", "share" (of WHOLE), "gmac", "gmac_per_s", "trunk_ratio"}} (the
    last three None for the stages without counted multiply-adds), stages in the order
    given, REMAINDER before WHOLE."""
    whole = seconds[WHOLE]
    trunk_rate = macs[TRUNK] / seconds[TRUNK] if TRUNK in macs else None
    table = {}
    known = INFERENCE_STAGES + TRAIN_STAGES
    stages = sorted((n for n in seconds if n not in (REMAINDER, WHOLE)),
                    key=lambda n: known.index(n) if n in known else len(known))
    order = stages + [REMAINDER, WHOLE]
    for name in order:
        s = seconds[name]
        entry = {"seconds": s, "share": s / whole, "gmac": None, "gmac_per_s": None,
                 "trunk_ratio": None}
        if macs.get(name):
            rate = macs[name] / s
            entry.update(gmac=macs[name] / GIGA, gmac_per_s=rate / GIGA,
                         trunk_ratio=rate / trunk_rate if trunk_rate else None)
        table[name] = entry
    return table


def breakdown_rows(what, size, batch, precision, table: dict, notes=None) -> list:
    """benchmark.py's rows of one stage table ("infer" or "train"), seconds; each row also
    holds the table's entry and the precision."""
    notes = {**NOTES, **(notes or {})}
    rows = []
    for name, entry in table.items():
        r = row(SUITE, f"{what} {precision} {name}", size, batch, "s", entry["seconds"],
                note=notes.get(name, ""))
        r.update(entry, precision=precision, stage=name, mode=what)
        rows.append(r)
    return rows


def peer_row(bench: OursBench, peer, seed, warmup, repeats) -> dict:
    """Our backbone + FPN beside torchvision's (peer: a TorchClient), batch 1."""
    import tensorflow as tf

    height, width = bench.size
    images = tf.constant(random_images(seed, 1, height, width))
    ours = _fetched(graph_function(lambda x: bench.model.fpn(bench.model.backbone(x))),
                    images)
    peer.prepare("backbone_fpn", bench.size, 1, seed, 0, 0)
    ours_s, theirs_s = interleaved(ours, peer.time, warmup, repeats)
    ours_s, theirs_s = median(ours_s), median(theirs_s)
    return row(SUITE, f"infer {bench.precision} backbone_fpn", bench.size, 1, "s", ours_s,
               theirs_s, "torchvision", theirs_s / ours_s)


def markdown_table(rows: list) -> str:
    """The rows of one mode ("infer" or "train") as a markdown table, one column group per
    precision: seconds, share, GMAC, GMAC/s, rate / the trunk's."""
    precisions = list(dict.fromkeys(r["precision"] for r in rows if "stage" in r))
    stages = list(dict.fromkeys(r["stage"] for r in rows if "stage" in r))
    entries = {(r["precision"], r["stage"]): r for r in rows if "stage" in r}
    header = ["stage"] + [f"{p} {c}" for p in precisions
                          for c in ("s", "share", "GMAC", "GMAC/s", "x trunk")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def number(value, form):
        return "" if value is None else format(value, form)

    for stage in stages:
        cells = [stage]
        for p in precisions:
            e = entries.get((p, stage))
            if e is None:
                cells += [""] * 5
                continue
            cells += [f"{e['seconds']:.3f}", f"{100 * e['share']:.1f}%",
                      number(e["gmac"], ".1f"), number(e["gmac_per_s"], ".1f"),
                      number(e["trunk_ratio"], ".2f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
