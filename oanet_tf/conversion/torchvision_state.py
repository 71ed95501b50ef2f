"""The state dict of torchvision's `maskrcnn_resnet50_fpn` / ResNet-101 variant: its names and
shapes, the renames between torchvision versions, and a seeded random one for tests.

numpy only (no TensorFlow, no torch): the script that runs torchvision on the seeded weights
(scripts/torchvision_reference.py, in a torch environment) imports it as the tests do. The
ResNet's own architecture is the backbone's (`modeling.backbone.torchvision_layout`, plain
constants).
"""

from __future__ import annotations

import re

import numpy as np

from oanet_tf.modeling.backbone.torchvision_layout import (EXPANSION, RESNET_BLOCKS,
                                                          STAGE_WIDTHS, STEM_CHANNELS,
                                                          STEM_KERNEL)

# torchvision's COCO detection models: background + 90 category ids (1..90, 10 never used).
TORCHVISION_NUM_CLASSES = 91
# The ids of those 10: no COCO annotation has them (torchvision calls them "N/A").
COCO_UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
FPN_CHANNELS = 256
ASPECT_RATIOS = (0.5, 1.0, 2.0)  # the RPN's anchors per location (height / width)
NUM_ANCHORS = len(ASPECT_RATIOS)
BOX_POOL, BOX_FC = 7, 1024
NUM_BOX_FCS = 2  # fc6, fc7
MASK_CONV, NUM_MASK_CONVS = 256, 4
NORM_SUFFIXES = ("weight", "bias", "running_mean", "running_var")
# Buffers a state dict may carry that hold no weight.
IGNORED_SUFFIXES = ("num_batches_tracked",)
# Names of torchvision >= 0.13 (Conv2dNormActivation wrappers) -> the names of the published
# COCO weights file (and of torchvision before 0.13), which this module uses.
RENAMES = (
    (re.compile(r"^backbone\.fpn\.(inner|layer)_blocks\.(\d+)\.0\."),
     r"backbone.fpn.\1_blocks.\2."),
    (re.compile(r"^rpn\.head\.conv\.0\.0\."), "rpn.head.conv."),
    (re.compile(r"^roi_heads\.mask_head\.(\d+)\.0\."),
     lambda m: f"roi_heads.mask_head.mask_fcn{int(m.group(1)) + 1}."),
)


def canonical_name(name: str) -> str:
    """A state-dict key in the published file's naming (see RENAMES)."""
    for pattern, replacement in RENAMES:
        name = pattern.sub(replacement, name)
    return name


def expected_shapes(backbone: str = "resnet50",
                    num_classes: int = TORCHVISION_NUM_CLASSES) -> dict:
    """{name: shape} of every weight of torchvision's Mask R-CNN with this backbone, in the
    published file's naming."""
    shapes = {"backbone.body.conv1.weight": (STEM_CHANNELS, 3, STEM_KERNEL, STEM_KERNEL)}
    shapes.update(_norm("backbone.body.bn1", STEM_CHANNELS))
    channels = STEM_CHANNELS
    stage_channels = []
    for stage, (width, count) in enumerate(zip(STAGE_WIDTHS, RESNET_BLOCKS[backbone])):
        for block in range(count):
            prefix = f"backbone.body.layer{stage + 1}.{block}"
            shapes[f"{prefix}.conv1.weight"] = (width, channels, 1, 1)
            shapes.update(_norm(f"{prefix}.bn1", width))
            shapes[f"{prefix}.conv2.weight"] = (width, width, 3, 3)
            shapes.update(_norm(f"{prefix}.bn2", width))
            shapes[f"{prefix}.conv3.weight"] = (width * EXPANSION, width, 1, 1)
            shapes.update(_norm(f"{prefix}.bn3", width * EXPANSION))
            if block == 0:
                shapes[f"{prefix}.downsample.0.weight"] = (width * EXPANSION, channels, 1, 1)
                shapes.update(_norm(f"{prefix}.downsample.1", width * EXPANSION))
            channels = width * EXPANSION
        stage_channels.append(channels)
    for level, inputs in enumerate(stage_channels):
        shapes.update(_conv(f"backbone.fpn.inner_blocks.{level}", FPN_CHANNELS, inputs, 1))
        shapes.update(_conv(f"backbone.fpn.layer_blocks.{level}", FPN_CHANNELS, FPN_CHANNELS,
                            3))
    shapes.update(_conv("rpn.head.conv", FPN_CHANNELS, FPN_CHANNELS, 3))
    shapes.update(_conv("rpn.head.cls_logits", NUM_ANCHORS, FPN_CHANNELS, 1))
    shapes.update(_conv("rpn.head.bbox_pred", NUM_ANCHORS * 4, FPN_CHANNELS, 1))
    shapes.update(_linear("roi_heads.box_head.fc6", BOX_FC, FPN_CHANNELS * BOX_POOL ** 2))
    shapes.update(_linear("roi_heads.box_head.fc7", BOX_FC, BOX_FC))
    shapes.update(_linear("roi_heads.box_predictor.cls_score", num_classes, BOX_FC))
    shapes.update(_linear("roi_heads.box_predictor.bbox_pred", num_classes * 4, BOX_FC))
    for i in range(NUM_MASK_CONVS):
        shapes.update(_conv(f"roi_heads.mask_head.mask_fcn{i + 1}", MASK_CONV,
                            FPN_CHANNELS if i == 0 else MASK_CONV, 3))
    shapes["roi_heads.mask_predictor.conv5_mask.weight"] = (MASK_CONV, MASK_CONV, 2, 2)
    shapes["roi_heads.mask_predictor.conv5_mask.bias"] = (MASK_CONV,)
    shapes.update(_conv("roi_heads.mask_predictor.mask_fcn_logits", num_classes, MASK_CONV, 1))
    return shapes


def _norm(prefix, channels):
    return {f"{prefix}.{suffix}": (channels,) for suffix in NORM_SUFFIXES}


def _conv(prefix, out, inputs, kernel):
    return {f"{prefix}.weight": (out, inputs, kernel, kernel), f"{prefix}.bias": (out,)}


def _linear(prefix, out, inputs):
    return {f"{prefix}.weight": (out, inputs), f"{prefix}.bias": (out,)}


# ------------------------------------------------------------------- seeded random weights
# Scales that keep a random network's activations finite and of order one and give it
# detections above torchvision's 0.05 score threshold: He-normal convolutions, batch norm
# near identity with the last norm of each block small (the residual sums stay bounded),
# objectness logits spread over a few units, class logits whose background bias leaves a few
# dozen detections per image above 0.05 (not the 100 of the cap), small box deltas.
RESIDUAL_NORM_SCALE = 0.2
NORM_NOISE = 0.1
RPN_LOGIT_STD = 1.0
CLASS_LOGIT_STD = 1.5
BACKGROUND_BIAS = 9.0
# The N/A slots, never trained as positives, score low in a trained model: here their logits
# are damped so that they stay in the softmax without being detected.
UNUSED_WEIGHT_SCALE = 0.25
BIAS_STD = 0.1  # every other bias
DELTA_STD = 0.1
MASK_LOGIT_STD = 1.0


def seeded_state_dict(seed: int, backbone: str = "resnet50") -> dict:
    """{name: float32 array}: a random torchvision Mask R-CNN state dict, the same for a seed
    on every machine (numpy's PCG64 stream)."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in expected_shapes(backbone).items():
        state[name] = _draw(rng, name, shape).astype(np.float32)
    return state


def _draw(rng, name: str, shape) -> np.ndarray:
    suffix = name.rsplit(".", 1)[1]
    if suffix in NORM_SUFFIXES and len(shape) == 1 and _is_norm(name):
        scale = RESIDUAL_NORM_SCALE if (".bn3." in name or ".downsample.1." in name) else 1.0
        if suffix == "weight":
            return scale * (1.0 + NORM_NOISE * rng.standard_normal(shape))
        if suffix == "bias":
            return NORM_NOISE * rng.standard_normal(shape)
        if suffix == "running_mean":
            return NORM_NOISE * rng.standard_normal(shape)
        return 1.0 + NORM_NOISE * rng.uniform(-1.0, 1.0, shape)  # running_var
    if suffix == "bias":
        if name == "roi_heads.box_predictor.cls_score.bias":
            bias = NORM_NOISE * rng.standard_normal(shape)
            bias[0] += BACKGROUND_BIAS
            return bias
        return BIAS_STD * rng.standard_normal(shape)
    fan_in = int(np.prod(shape[1:]))
    if name.startswith("roi_heads.mask_predictor.conv5_mask"):
        fan_in = shape[0]  # a transposed convolution's weight is [in, out, kh, kw]
    std = np.sqrt(2.0 / fan_in)  # He normal: unit-variance ReLU activations
    if name.startswith("rpn.head.cls_logits"):
        std = RPN_LOGIT_STD / np.sqrt(fan_in)
    elif name == "roi_heads.box_predictor.cls_score.weight":
        weight = CLASS_LOGIT_STD / np.sqrt(fan_in) * rng.standard_normal(shape)
        weight[list(COCO_UNUSED_IDS)] *= UNUSED_WEIGHT_SCALE
        return weight
    elif name.startswith(("rpn.head.bbox_pred", "roi_heads.box_predictor.bbox_pred")):
        std = DELTA_STD / np.sqrt(fan_in)
    elif name.startswith("roi_heads.mask_predictor.mask_fcn_logits"):
        std = MASK_LOGIT_STD / np.sqrt(fan_in)
    return std * rng.standard_normal(shape)


def _is_norm(name: str) -> bool:
    return ".bn" in name or ".downsample.1." in name
