"""Network size of OANet: parameters per component and the cost of one forward pass.

For each config (coco_r50 and coco_r101 by default) the model is built with random weights at
the padded input size (800x1344 holds a COCO image resized to 800x1333) and nothing is run:
the counts come from traced tf.function graphs, batch 1.

What is counted:
  - parameters: every weight of each component (`count_params`), trainable and not
    (the not-trainable ones are the batch-norm moving statistics of the backbone); the
    components are reached through the model's public attributes (COMPONENT_PATHS);
  - "profiler": TensorFlow's own FLOP count of the dense part (images -> FPN maps, RPN maps,
    semantic logits) by tf.compat.v1.profiler with ProfileOptionBuilder.float_operation();
    it counts 2 per multiply-add of convolutions and matmuls plus the elementwise ops it
    knows (bias adds, batch norm, ReLU inputs, ...);
  - "multiply-adds": our count from the graph of `OANet.detect` (everything before the
    panoptic merge), per component: Conv2D, Conv2DBackpropInput (transposed conv), MatMul,
    BatchMatMulV2 and Einsum only. The RoI heads run at the static sizes of the graph: the box
    head on rpn_post_nms_topk_test proposals (1000), the mask head on detections_per_image
    (100). Outside the layers, paste_masks (separable resampling matmuls) and srm_inputs (an
    einsum) are counted by tracing them alone at the same shapes. Not counted: elementwise
    ops, RoIAlign's bilinear gathers, NMS, top-k, resizes, softmax, the merge.

    python benchmarks/model_report.py [--configs configs/coco_r50.yaml configs/coco_r101.yaml]
        [--categories /work/shared/coco/panoptic_coco_categories.json]
        [--padded-size 800 1344] [--out runs/model_report.json] [--set section.key=value ...]
"""

from __future__ import annotations

import argparse
import re
import sys

import keras
import numpy as np
import tensorflow as tf

from harness.inputs import DEFAULT_CATEGORIES
from oanet_tf.config import load_config
from oanet_tf.data.panoptic_format import CategoryMap, load_categories
from oanet_tf.errors import DatasetError
from oanet_tf.fileio import write_json
from oanet_tf.modeling import srm_layer
from oanet_tf.modeling.builder import build_oanet
from oanet_tf.ops import mask_ops

DEFAULT_CONFIGS = ("configs/coco_r50.yaml", "configs/coco_r101.yaml")
DEFAULT_PADDED_SIZE = (800, 1344)  # a COCO image at 800x1333, zero-padded to a multiple of 32
# Each component reported, by the public attributes that lead to its layer from the model
# (stuff_backbone and stuff_fpn are None when the stuff branch shares the model's).
COMPONENT_PATHS = {"backbone": ("backbone",), "stuff_backbone": ("stuff_backbone",),
                   "fpn": ("fpn",), "stuff_fpn": ("stuff_fpn",), "rpn_head": ("rpn", "head"),
                   "box_head": ("roi_heads", "box_head"),
                   "mask_head": ("roi_heads", "mask_head"),
                   "stuff_head": ("stuff_branch", "head"), "srm": ("srm",)}
# The Mask R-CNN part of OANet (what torchvision's maskrcnn_resnet50_fpn also has).
MASK_RCNN_COMPONENTS = ("backbone", "fpn", "rpn_head", "box_head", "mask_head")
OUTSIDE_LAYERS = "outside layers"
WHAT_IS_COUNTED = (
    "batch 1 at the padded size; dense_profiler_flops: tf.compat.v1.profiler float_operation "
    "on the graph of model(images) (2 FLOPs per conv/matmul multiply-add plus the elementwise "
    "ops it registers); detect_multiply_adds: Conv2D, Conv2DBackpropInput, MatMul, "
    "BatchMatMul and Einsum of the OANet.detect graph (proposals and detections at the "
    "graph's static sizes), per layer name scope, paste_masks and srm_inputs traced alone; "
    "not counted: elementwise ops, RoIAlign gathers, NMS, top-k, resizes, softmax, the merge")
MASK_SIZE_FACTOR = 2  # the mask head's deconv doubles the pooled size
FLOPS_PER_MULTIPLY_ADD = 2
GIGA = 1e9
MEGA = 1e6


# ------------------------------------------------------------------------------- parameters
def _count(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def component_layers(model) -> dict:
    """{component: the layers on its path from the model} of the components the model has."""
    found = {}
    for name, path in COMPONENT_PATHS.items():
        layers, holder = [], model
        for attribute in path:
            holder = getattr(holder, attribute)
            if holder is None:
                break
            layers.append(holder)
        else:
            found[name] = layers
    return found


def name_scopes(model) -> dict:
    """{component: its layers' names, outermost first}: the name scope its ops lie in."""
    return {name: tuple(layer.name for layer in layers)
            for name, layers in component_layers(model).items()}


def parameter_report(model) -> dict:
    """Parameters per component: {name: {"total", "trainable", "non_trainable"}}, plus the
    whole model under "total" and anything outside the named components under "other"."""
    report = {}
    seen = 0
    for name, layers in component_layers(model).items():
        layer = layers[-1]
        trainable = _count(layer.trainable_weights)
        non_trainable = _count(layer.non_trainable_weights)
        report[name] = {"total": trainable + non_trainable, "trainable": trainable,
                        "non_trainable": non_trainable}
        seen += trainable + non_trainable
    total = {"total": _count(model.weights), "trainable": _count(model.trainable_weights),
             "non_trainable": _count(model.non_trainable_weights)}
    report["other"] = {"total": total["total"] - seen}
    report["mask_rcnn_part"] = {key: sum(report[n][key] for n in MASK_RCNN_COMPONENTS)
                                for key in ("total", "trainable", "non_trainable")}
    report["total"] = total
    return report


# ------------------------------------------------------------------------------ graph costs
def _num(dim) -> int:
    if dim is None:
        raise ValueError("a dimension is not static; trace with fully static shapes")
    return int(dim)


def _elements(shape) -> int:
    return int(np.prod([_num(d) for d in shape]))


def _einsum_multiply_adds(op) -> int:
    """Product of the sizes of every index of a two-operand einsum (no ellipsis)."""
    equation = op.get_attr("equation").decode()
    inputs, _ = equation.replace(" ", "").split("->")
    sizes = {}
    for term, tensor in zip(inputs.split(","), op.inputs):
        if "." in term:
            raise ValueError(f"{op.name}: einsum with an ellipsis is not counted: {equation}")
        for letter, dim in zip(term, tensor.shape):
            sizes[letter] = _num(dim)
    return int(np.prod(list(sizes.values())))


def op_multiply_adds(op) -> int:
    """Multiply-adds of one graph op: convolutions, matmuls and einsums; 0 for other ops."""
    if op.type == "Conv2D":  # out [N, Ho, Wo, Co], filter [kh, kw, Ci, Co]
        kh, kw, ci, _ = (_num(d) for d in op.inputs[1].shape)
        return _elements(op.outputs[0].shape) * kh * kw * ci
    if op.type == "Conv2DBackpropInput":  # transposed conv: each input pixel -> kh*kw*Co
        kh, kw, co, _ = (_num(d) for d in op.inputs[1].shape)
        return _elements(op.inputs[2].shape) * kh * kw * co
    if op.type == "MatMul":
        a = op.inputs[0].shape
        inner = _num(a[0] if op.get_attr("transpose_a") else a[1])
        return _elements(op.outputs[0].shape) * inner
    if op.type in ("BatchMatMulV2", "BatchMatMulV3"):
        a = op.inputs[0].shape
        inner = _num(a[-2] if op.get_attr("adj_x") else a[-1])
        return _elements(op.outputs[0].shape) * inner
    if op.type == "Einsum":
        return _einsum_multiply_adds(op)
    return 0


def component_of(op_name: str, scopes: dict) -> str:
    """The OANet component whose name scope (name_scopes) holds an op, at the top of the op's
    name or under the model's own scope ("oanet_1/fpn_1/output2_1/..." -> "fpn",
    "roi_heads_1/mask_head_1/conv1_1/..." -> "mask_head"), else OUTSIDE_LAYERS."""
    parts = [re.sub(r"_\d+$", "", part) for part in op_name.split("/")]
    for start in (0, 1):
        for name, scope in scopes.items():
            if tuple(parts[start:start + len(scope)]) == scope:
                return name
    return OUTSIDE_LAYERS


def graph_multiply_adds(graph, scopes: dict) -> dict:
    """{component: multiply-adds} over every op of a graph."""
    totals = {}
    for op in graph.get_operations():
        count = op_multiply_adds(op)
        if count:
            name = component_of(op.name, scopes)
            totals[name] = totals.get(name, 0) + count
    return totals


def profiler_flops(graph, scopes: dict) -> tuple[int, dict]:
    """TensorFlow profiler FLOPs of a graph: (total, {component: flops})."""
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    profile = tf.compat.v1.profiler.profile(graph=graph, options=options)
    per_component = {}
    for node in profile.children:
        name = component_of(node.name, scopes)
        per_component[name] = per_component.get(name, 0) + int(node.total_float_ops)
    return int(profile.total_float_ops), per_component


def _graph(function, *specs):
    return tf.function(function).get_concrete_function(*specs).graph


def flop_report(model, padded_size) -> dict:
    """Profiler FLOPs of the dense part and multiply-adds of OANet.detect, batch 1."""
    height, width = padded_size
    image_spec = tf.TensorSpec([1, height, width, 3], tf.float32)
    dense_graph = _graph(lambda images: model(images, training=False), image_spec)
    scopes = name_scopes(model)
    dense_total, dense_per_component = profiler_flops(dense_graph, scopes)

    detect_macs = graph_multiply_adds(_graph(model.detect, image_spec), scopes)
    detections = model.detections_per_image
    mask_size = model.roi_heads.mask_pooler_resolution * MASK_SIZE_FACTOR
    paste = graph_multiply_adds(_graph(
        lambda masks, boxes: mask_ops.paste_masks(masks, boxes, (height, width)),
        tf.TensorSpec([1, detections, mask_size, mask_size], tf.float32),
        tf.TensorSpec([1, detections, 4], tf.float32)), scopes)
    channels = graph_multiply_adds(_graph(
        lambda masks, classes: srm_layer.srm_inputs(masks, classes, model.num_things),
        tf.TensorSpec([1, detections, height, width], tf.float32),
        tf.TensorSpec([1, detections], tf.int32)), scopes)
    outside = detect_macs.pop(OUTSIDE_LAYERS, 0)
    named = {"paste_masks": sum(paste.values()), "srm_inputs": sum(channels.values())}
    detect_macs.update(named)
    detect_macs["other (outside layers)"] = outside - sum(named.values())
    return {
        "padded_size": [height, width],
        "proposals": model.rpn.post_nms_topk_test,
        "detections": detections,
        "dense_profiler_flops": dense_total,
        "dense_profiler_flops_per_component": dense_per_component,
        "detect_multiply_adds_per_component": detect_macs,
        "detect_multiply_adds": sum(detect_macs.values()),
    }


# --------------------------------------------------------------------------------- report
def model_report(config_path: str, categories: CategoryMap, padded_size, overrides) -> dict:
    config = load_config(config_path, list(overrides))
    keras.utils.set_random_seed(config.train.seed)
    model = build_oanet(config.model, config.train, categories)
    report = {"config": config_path, "backbone": config.model.backbone.name,
              "sharing": config.model.sharing, "srm_kernel": config.model.srm.kernel,
              "srm_stride": config.model.srm.stride,
              "num_things": categories.num_things, "num_stuff": categories.num_stuff,
              "parameters": parameter_report(model),
              "cost": flop_report(model, padded_size)}
    keras.backend.clear_session()
    return report


def format_report(report: dict) -> str:
    params, cost = report["parameters"], report["cost"]
    h, w = cost["padded_size"]
    lines = [f"== {report['config']} ({report['backbone']}, sharing {report['sharing']}, "
             f"SRM {report['srm_kernel']} stride {report['srm_stride']}; "
             f"{report['num_things']} things, {report['num_stuff']} stuff)",
             f"{'component':<24}{'params (M)':>12}{'trainable':>12}"]
    labels = {"mask_rcnn_part": "Mask R-CNN part", "total": "total"}
    for name, row in params.items():
        if name == "other" and row["total"] == 0:
            continue
        trainable = f"{row['trainable'] / MEGA:12.3f}" if "trainable" in row else ""
        lines.append(f"{labels.get(name, name):<24}{row['total'] / MEGA:12.3f}{trainable}")
    lines.append(f"(Mask R-CNN part: {', '.join(MASK_RCNN_COMPONENTS)}; not trainable: "
                 f"batch-norm moving statistics)")
    lines.append("")
    lines.append(f"dense part (images -> FPN, RPN maps, semantic logits) at {h}x{w}, batch 1, "
                 f"TF profiler: {cost['dense_profiler_flops'] / GIGA:.1f} GFLOPs")
    for name, flops in sorted(cost["dense_profiler_flops_per_component"].items(),
                              key=lambda item: -item[1]):
        lines.append(f"    {name:<28}{flops / GIGA:10.1f} GFLOPs")
    lines.append(f"OANet.detect (before the merge), {cost['proposals']} proposals, "
                 f"{cost['detections']} detections: "
                 f"{cost['detect_multiply_adds'] / GIGA:.1f} G multiply-adds "
                 f"(= {FLOPS_PER_MULTIPLY_ADD * cost['detect_multiply_adds'] / GIGA:.1f} "
                 f"GFLOPs of conv/matmul/einsum)")
    for name, macs in sorted(cost["detect_multiply_adds_per_component"].items(),
                             key=lambda item: -item[1]):
        lines.append(f"    {name:<28}{macs / GIGA:10.2f} GMACs")
    lines.append(f"counted: {WHAT_IS_COUNTED}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS))
    parser.add_argument("--categories", default=DEFAULT_CATEGORIES,
                        help="COCO panoptic categories JSON (local file; never downloaded)")
    parser.add_argument("--padded-size", type=int, nargs=2, default=DEFAULT_PADDED_SIZE,
                        metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE", help="config override (repeatable)")
    parser.add_argument("--out", default="runs/model_report.json")
    args = parser.parse_args(argv)
    try:
        categories = load_categories(args.categories)
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    reports = []
    for path in args.configs:
        report = model_report(path, categories, tuple(args.padded_size), args.overrides)
        print(format_report(report), flush=True)
        print()
        reports.append(report)
    write_json(args.out, {"tensorflow": tf.__version__, "keras": keras.__version__,
                          "what_is_counted": WHAT_IS_COUNTED, "models": reports}, indent=2)
    print(f"report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
