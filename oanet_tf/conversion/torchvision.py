"""torchvision's Mask R-CNN (`maskrcnn_resnet50_fpn` state dict) -> OANet's backbone, FPN, RPN
and RoI heads; the stuff branch and the SRM stay as built (fresh) or come from another model.

Layouts (torchvision -> Keras):
- convolutions [out, in, kh, kw] -> [kh, kw, in, out]; the transposed convolution of the mask
  head [in, out, kh, kw] -> [kh, kw, out, in]; linear [out, in] -> [in, out];
- box deltas (dx, dy, dw, dh) -> (dy, dx, dh, dw), in the RPN (per anchor) and the box
  predictor (per class);
- fc6 reads torchvision's pooled features flattened as (C, y, x), ours as (y, x, C);
- classes by COCO category id: torchvision's slot of category id c is c (0 is background).
  The class logits keep background, then the model's things in their order, then every
  other slot (`model.roi_heads.unused_class_slots`, so the softmax is torchvision's); the box
  and mask predictors keep the things' rows.
"""

from __future__ import annotations

import os

import numpy as np

from oanet_tf.config import IMAGENET_RGB, STRIDE_IN_3X3, Config, save_config
from oanet_tf.conversion import torchvision_state as names
from oanet_tf.data.panoptic_format import CategoryMap
from oanet_tf.environment import record_start
from oanet_tf.errors import OANetError
from oanet_tf.fileio import write_json
from oanet_tf.modeling.backbone.torchvision_layout import RESNET_BLOCKS

NPZ, PTH_SUFFIXES = ".npz", (".pth", ".pt", ".bin")
# Our delta order (dy, dx, dh, dw) read from torchvision's (dx, dy, dw, dh).
DELTA_ORDER = (1, 0, 3, 2)
CONVERSION_FILE = "conversion.json"  # what the model dir was converted from
NOT_IN_TORCHVISION = ("stuff_branch", "srm")  # OANet's parts: fresh, or --stuff-from
LISTED_NAMES = 5  # names quoted in an error about missing or unexpected weights
TORCH_MISSING = ("reading a .pth file needs PyTorch: pip install 'oanet_tf[torch]' (or pip "
                 "install torch), or save the state dict as .npz with numpy "
                 "(numpy.savez(path, **{k: v.numpy() for k, v in state.items()}))")


def read_state_dict(path: str) -> dict:
    """A torchvision state dict from `.pth` (needs torch) or `.npz` -> {name: float32
    array} in the published file's naming (`torchvision_state.canonical_name`), without
    batch norm's counters."""
    if not os.path.isfile(path):
        raise OANetError(f"checkpoint not found: {path}")
    if path.endswith(NPZ):
        with np.load(path) as data:
            raw = {key: data[key] for key in data.files}
    else:
        try:
            import torch
        except ImportError:
            raise OANetError(f"{path}: {TORCH_MISSING}") from None
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for a file it cannot read
            raise OANetError(f"{path}: not a PyTorch state dict ({err})") from None
        if isinstance(raw, dict) and isinstance(raw.get("model"), dict):
            raw = raw["model"]  # a training checkpoint of torchvision's references
        if not isinstance(raw, dict):
            raise OANetError(f"{path}: holds a {type(raw).__name__}, not a state dict")
        raw = {key: value.detach().cpu().numpy() for key, value in raw.items()
               if hasattr(value, "detach")}
    return {names.canonical_name(key): np.asarray(value, np.float32)
            for key, value in raw.items() if not key.endswith(names.IGNORED_SUFFIXES)}


def check_state_dict(state: dict, backbone: str, path: str = "checkpoint"):
    """OANetError naming missing, unexpected or misshapen weights (the first LISTED_NAMES of
    each) unless `state` is torchvision's Mask R-CNN with this backbone and 91 classes."""
    expected = names.expected_shapes(backbone)
    problems = []
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong = [f"{key} {tuple(state[key].shape)} (expected {expected[key]})"
             for key in expected if key in state and tuple(state[key].shape) != expected[key]]
    for label, keys in (("missing", missing), ("unexpected", unexpected),
                        ("wrong shape", wrong)):
        if keys:
            more = f" and {len(keys) - LISTED_NAMES} more" if len(keys) > LISTED_NAMES else ""
            problems.append(f"{len(keys)} {label}: {', '.join(keys[:LISTED_NAMES])}{more}")
    if problems:
        raise OANetError(f"{path} is not torchvision's maskrcnn_{backbone}_fpn state dict "
                         f"with {names.TORCHVISION_NUM_CLASSES} classes: {'; '.join(problems)}")


def class_slots(categories: CategoryMap) -> tuple[list, list]:
    """(the torchvision slot of each thing, in the model's order; the other slots 1..90)."""
    slots = list(categories.thing_ids)
    outside = [cid for cid in slots if not 0 < cid < names.TORCHVISION_NUM_CLASSES]
    if outside:
        raise OANetError(f"thing categories {outside} have no class in torchvision's COCO "
                         f"model (category ids 1..{names.TORCHVISION_NUM_CLASSES - 1})")
    unused = [c for c in range(1, names.TORCHVISION_NUM_CLASSES) if c not in set(slots)]
    return slots, unused


def check_config(config: Config, categories: CategoryMap):
    """OANetError unless the config builds torchvision's architecture (the switches of
    configs/coco_r50_torchvision.yaml that change weights' shapes or meaning)."""
    m = config.model
    _, unused = class_slots(categories)
    backbone = m.backbone.name if m.backbone.name in RESNET_BLOCKS else "resnet50"
    wanted = {"backbone.name": backbone, "backbone.stride_in": STRIDE_IN_3X3,
              "backbone.pixel_normalization": IMAGENET_RGB, "fpn.channels": names.FPN_CHANNELS,
              "rpn.conv_channels": names.FPN_CHANNELS,
              "rpn.anchor_aspect_ratios": names.ASPECT_RATIOS,
              "roi_heads.box_pooler_resolution": names.BOX_POOL,
              "roi_heads.box_head_fc_dim": names.BOX_FC,
              "roi_heads.box_head_num_fc": names.NUM_BOX_FCS,
              "roi_heads.mask_head_conv_dim": names.MASK_CONV,
              "roi_heads.mask_head_num_conv": names.NUM_MASK_CONVS,
              "roi_heads.unused_class_slots": len(unused)}
    wrong = [f"model.{key}: {_value_at(m, key)!r} (needs {value!r})"
             for key, value in wanted.items() if _plain(_value_at(m, key)) != _plain(value)]
    if wrong:
        raise OANetError(f"the config does not build torchvision's Mask R-CNN: "
                         f"{'; '.join(wrong)} (start from configs/coco_r50_torchvision.yaml)")


def _value_at(model_config, key: str):
    """The value of `key` ("rpn.conv_channels") of the model's config."""
    section_name, name = key.split(".")
    return getattr(getattr(model_config, section_name), name)


def _plain(value):
    return tuple(float(v) for v in value) if isinstance(value, (list, tuple)) else value


def convert_into(model, state: dict, categories: CategoryMap):
    """Set the backbone, FPN, RPN and RoI heads of OANet `model` from torchvision's `state`
    (checked by `check_state_dict`)."""
    stages = next(layer for layer in model.backbone.layers
                  if layer.name.endswith("_stages"))
    for key in state:
        if key.startswith("backbone.body.") and key.endswith(".weight"):
            module = key[len("backbone.body."):-len(".weight")]
            try:
                layer = stages.get_layer(module.replace(".", "_"))
            except ValueError:  # keras.applications' layout: check_config names the switch
                raise OANetError(f"{key}: the model's backbone has no layer "
                                 f"{module.replace('.', '_')}: it is not torchvision's ResNet "
                                 f"layout (model.backbone.stride_in: {STRIDE_IN_3X3})") from None
            if f"backbone.body.{module}.running_mean" in state:  # a batch norm
                _set(layer, [state[f"backbone.body.{module}.{s}"] for s in names.NORM_SUFFIXES],
                     key)
            else:
                _set(layer, [_conv(state[key])], key)
    for i, (lateral, output) in enumerate(zip(model.fpn.laterals, model.fpn.outputs_convs)):
        _set(lateral, _conv_bias(state, f"backbone.fpn.inner_blocks.{i}"), lateral.name)
        _set(output, _conv_bias(state, f"backbone.fpn.layer_blocks.{i}"), output.name)
    head = model.rpn.head
    _set(head.conv, _conv_bias(state, "rpn.head.conv"), "rpn.head.conv")
    _set(head.objectness, _conv_bias(state, "rpn.head.cls_logits"), "rpn.head.cls_logits")
    anchors = state["rpn.head.bbox_pred.bias"].shape[0] // 4
    rows = [4 * a + k for a in range(anchors) for k in DELTA_ORDER]
    kernel, bias = _conv_bias(state, "rpn.head.bbox_pred")
    _set(head.deltas, [kernel[..., rows], bias[rows]], "rpn.head.bbox_pred")

    slots, unused = class_slots(categories)
    box_head, mask_head = model.roi_heads.box_head, model.roi_heads.mask_head
    fc6 = state["roi_heads.box_head.fc6.weight"]
    pool = names.BOX_POOL
    fc6 = fc6.reshape(fc6.shape[0], -1, pool, pool).transpose(2, 3, 1, 0).reshape(
        -1, fc6.shape[0])  # (C, y, x) -> (y, x, C) rows
    _set(box_head.fcs[0], [fc6, state["roi_heads.box_head.fc6.bias"]], "fc6")
    _set(box_head.fcs[1], _linear(state, "roi_heads.box_head.fc7"), "fc7")
    logits = [0] + slots + unused
    weight, bias = _linear(state, "roi_heads.box_predictor.cls_score")
    _set(box_head.cls, [weight[:, logits], bias[logits]], "cls_score")
    deltas = [4 * slot + k for slot in slots for k in DELTA_ORDER]
    weight, bias = _linear(state, "roi_heads.box_predictor.bbox_pred")
    _set(box_head.box, [weight[:, deltas], bias[deltas]], "bbox_pred")
    for i, conv in enumerate(mask_head.convs):
        _set(conv, _conv_bias(state, f"roi_heads.mask_head.mask_fcn{i + 1}"), conv.name)
    deconv = state["roi_heads.mask_predictor.conv5_mask.weight"].transpose(2, 3, 1, 0)
    _set(mask_head.deconv, [deconv, state["roi_heads.mask_predictor.conv5_mask.bias"]],
         "conv5_mask")
    kernel, bias = _conv_bias(state, "roi_heads.mask_predictor.mask_fcn_logits")
    _set(mask_head.predictor, [kernel[..., slots], bias[slots]], "mask_fcn_logits")


def _conv(weight):
    return weight.transpose(2, 3, 1, 0)


def _conv_bias(state, prefix):
    return [_conv(state[f"{prefix}.weight"]), state[f"{prefix}.bias"]]


def _linear(state, prefix):
    return [state[f"{prefix}.weight"].T, state[f"{prefix}.bias"]]


def _set(layer, values, source: str):
    """layer.set_weights, with an error naming both sides when the shapes differ."""
    shapes = [tuple(w.shape) for w in layer.get_weights()]
    given = [tuple(v.shape) for v in values]
    if shapes != given:
        raise OANetError(f"torchvision's {source} {given} does not fit layer {layer.name} "
                         f"{shapes}")
    layer.set_weights([np.ascontiguousarray(v) for v in values])


def convert(checkpoint: str, config: Config, categories: CategoryMap, model_dir: str,
            stuff_from: str | None = None) -> str:
    """Convert `checkpoint` into a new model dir (config.yaml, categories.json,
    conversion.json, environment.json, checkpoints/last.weights.h5) -> the weights' path."""
    from oanet_tf.modeling.builder import build_oanet
    from oanet_tf.inference.trained_model import (CATEGORIES_FILE, CONFIG_FILE, LAST_WEIGHTS,
                                                  load_trained_model)
    from oanet_tf.training.weights_file import save_weights

    target = os.path.join(model_dir, LAST_WEIGHTS)
    if os.path.exists(target):
        raise OANetError(f"{target} exists: convert into a new --model-dir")
    check_config(config, categories)
    state = read_state_dict(checkpoint)
    check_state_dict(state, config.model.backbone.name, checkpoint)
    model = build_oanet(config.model, config.train, categories, load_backbone_weights=False)
    copied = []
    if stuff_from:
        source = load_trained_model(stuff_from)
        if source.categories.semantic_ids != categories.semantic_ids:
            raise OANetError(f"--stuff-from {stuff_from}: a model of other categories")
        for name in NOT_IN_TORCHVISION:
            _copy_weights(getattr(source.model, name), getattr(model, name), stuff_from)
            copied.append(name)
    convert_into(model, state, categories)
    os.makedirs(model_dir, exist_ok=True)
    save_config(config, os.path.join(model_dir, CONFIG_FILE))
    write_json(os.path.join(model_dir, CATEGORIES_FILE), list(categories.categories))
    slots, unused = class_slots(categories)
    write_json(os.path.join(model_dir, CONVERSION_FILE), {
        "source": os.path.abspath(checkpoint), "format": "torchvision maskrcnn_fpn",
        "converted": ["backbone", "fpn", "rpn", "roi_heads"],
        "from_stuff_model": stuff_from or None, "copied": copied,
        "fresh": [n for n in NOT_IN_TORCHVISION if n not in copied],
        "thing_slots": slots, "unused_slots": unused})
    record_start(model_dir, "convert")
    # The weights last, whole or not at all: their file marks a finished conversion.
    save_weights(model, target)
    return target


def _copy_weights(source, target, where: str):
    shapes = [tuple(w.shape) for w in source.get_weights()]
    if shapes != [tuple(w.shape) for w in target.get_weights()]:
        raise OANetError(f"--stuff-from {where}: its {target.name} has other shapes "
                         f"(another config)")
    target.set_weights(source.get_weights())
