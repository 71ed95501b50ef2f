"""Typed configuration: YAML files in configs/ loaded into dataclasses.

Config values live here and in configs/*.yaml only; commands turn them into constructor
arguments in one place (`oanet_tf.modeling.builder`, `oanet_tf.data.pipeline`). Each
section is a dataclass whose fields declare their range; a model component's section (model.rpn,
model.roi_heads, ...) names its constructor's arguments, so the builder passes it whole.
Unknown keys are rejected with a message that names them, so a typo never passes silently;
values a machine cannot hold are refused when the config loads, naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml

from oanet_tf.errors import ConfigError
from oanet_tf.fileio import atomic_open

# The names a config may choose, defined once: the modules that implement them import these.
SMALL_RESNET, RESNET50, RESNET101 = "small_resnet", "resnet50", "resnet101"
BACKBONES = (SMALL_RESNET, RESNET50, RESNET101)
# Where a ResNet backbone starts (model.backbone.weights), besides a local weights file:
# keras.applications' ImageNet weights, or random weights on purpose.
IMAGENET_WEIGHTS, NO_BACKBONE_WEIGHTS = "imagenet", "none"
# A ResNet's stages, as Detectron2's FREEZE_AT counts them: the stem, then res2..res5.
RESNET_STAGES = 5
# Table 4: two backbones, one backbone and two FPNs, or one backbone and FPN for both.
SEPARATE, SHARED_BACKBONE, SHARED_BACKBONE_FPN = "none", "backbone", "backbone_fpn"
SHARING_MODES = (SEPARATE, SHARED_BACKBONE, SHARED_BACKBONE_FPN)
# Table 2: every category a semantic class, or the stuff classes plus one "things" class.
ALL_CATEGORIES, STUFF_PLUS_THINGS = "all", "stuff_plus_things"
SEMANTIC_SUPERVISIONS = (ALL_CATEGORIES, STUFF_PLUS_THINGS)
# Table 5: the SRM's kernel.
GCN_KERNEL, KERNEL_3X3, KERNEL_1X1 = "gcn", "3x3", "1x1"
SRM_KERNELS = (KERNEL_1X1, KERNEL_3X3, GCN_KERNEL)
# How overlapping instances are ordered in the merge (eval.merge_order): the SRM ranking score
# (OANet), the detection score (the heuristic baseline) or their product.
RANKING, DETECTION, PRODUCT = "ranking", "detection", "product"
MERGE_ORDERS = (RANKING, DETECTION, PRODUCT)
# data.num_parallel_calls meaning tf.data.AUTOTUNE.
AUTOTUNE_SETTING = -1
# Which detections the SRM reads at inference (eval.srm_input): every detection the RoI heads
# return (score >= model.roi_heads.test_score_threshold), or only those the merge may draw (score >=
# eval.instance_score_threshold).
SRM_ALL_DETECTIONS, SRM_MERGEABLE = "all_detections", "mergeable"
SRM_INPUTS = (SRM_ALL_DETECTIONS, SRM_MERGEABLE)
# What eval.min_stuff_area bounds (eval.stuff_area_rule): the free pixels of each stuff class
# in an image, or each connected region of one stuff class (the paper's "connected stuff area").
PER_CLASS, PER_REGION = "per_class", "per_region"
STUFF_AREA_RULES = (PER_CLASS, PER_REGION)
# Where a ResNet bottleneck block strides (model.backbone.stride_in): in its first 1x1
# convolution (Caffe2, Detectron2, keras.applications) or in its 3x3 (torchvision, "ResNet v1.5").
STRIDE_IN_1X1, STRIDE_IN_3X3 = "1x1", "3x3"
BOTTLENECK_STRIDES = (STRIDE_IN_1X1, STRIDE_IN_3X3)
# How pixels are normalised before the backbone (model.backbone.pixel_normalization): BGR minus the
# ImageNet mean in 0..255 (Caffe, keras.applications' ResNets) or RGB in [0, 1] minus the
# ImageNet mean, divided by its std (torchvision).
CAFFE_BGR, IMAGENET_RGB = "caffe_bgr", "imagenet_rgb"
PIXEL_NORMALIZATIONS = (CAFFE_BGR, IMAGENET_RGB)
# How an anchor's cell (its box around the location) is made (model.rpn.anchor_cells): exact
# sizes at stride 2^level, or torchvision's: cell corners rounded to integers and the stride
# of a level the padded image size // its grid size (P6 of an 800-pixel side: 800 // 13 = 61).
EXACT_CELLS, TORCHVISION_CELLS = "exact", "torchvision"
ANCHOR_CELLS = (EXACT_CELLS, TORCHVISION_CELLS)
# How a resized side is rounded to pixels (data.resize_rounding): to the nearest integer, or
# down (torchvision's interpolate with recompute_scale_factor).
ROUND_NEAREST, ROUND_DOWN = "nearest", "floor"
RESIZE_ROUNDINGS = (ROUND_NEAREST, ROUND_DOWN)
# Pixel value range of the images the model reads (uint8 RGB).
MAX_PIXEL_VALUE = 255.0
# Padded image sizes are multiples of this: the stride of C5, the backbone's coarsest map, so
# that the FPN's top-down sums line up.
SIZE_DIVISIBILITY = 32
# Precision policies (train.mixed_precision), XLA switches (train.jit_compile) and what a
# non-finite loss does (train.on_nonfinite_loss).
MIXED_PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
JIT_SETTINGS = ("auto", "true", "false")
NONFINITE_ACTIONS = ("skip", "stop")
# The dtype of the layers that decide proposals and detections (the RPN's objectness and
# deltas, the box head's class logits and deltas) under any mixed-precision policy. In bfloat16
# they moved the demo model's ownership accuracy by 1.2 points from float32, beyond what +-0.5
# grey-level input noise moves it; in float32 (little compute) every PQ and ownership number of
# that model stayed within 0.3 (docs/precision.md). The other output layers changed
# nothing measurable.
DECISION_LAYER_DTYPE = "float32"
# Keys of earlier versions -> what replaced them: a config naming one (such as the config.yaml
# of a run trained before) loads with a warning that says so.
RETIRED_KEYS = {"data.padded_size": "batches are now padded to their largest image; "
                                    "data.buckets gives static shapes where XLA needs them"}
# model.<key> of the flat layout (config.yaml of model dirs written before the model had a
# section per component) -> its key under model now. `translate_flat_model_keys` reads them.
FLAT_MODEL_KEYS = {
    "backbone": "backbone.name", "backbone_weights": "backbone.weights",
    "backbone_freeze_at": "backbone.freeze_at", "bottleneck_stride_in": "backbone.stride_in",
    "pixel_normalization": "backbone.pixel_normalization",
    "small_resnet_widths": "backbone.small_resnet_widths",
    "small_resnet_blocks": "backbone.small_resnet_blocks", "fpn_channels": "fpn.channels",
    "anchor_sizes": "rpn.anchor_sizes", "anchor_aspect_ratios": "rpn.anchor_aspect_ratios",
    "anchor_offset": "rpn.anchor_offset", "anchor_cells": "rpn.anchor_cells",
    **{f"rpn_{name}": f"rpn.{name}" for name in (
        "conv_channels", "iou_thresholds", "batch_size_per_image", "positive_fraction",
        "pre_nms_topk_train", "post_nms_topk_train", "pre_nms_topk_test", "post_nms_topk_test",
        "nms_threshold", "nms_per_level", "min_box_size")},
    **{f"roi_{name}": f"roi_heads.{name}"
       for name in ("batch_size_per_image", "positive_fraction", "iou_threshold")},
    **{name: f"roi_heads.{name}" for name in (
        "roi_align_aligned", "box_coder_weights", "box_pooler_resolution",
        "mask_pooler_resolution", "pooler_sampling_ratio", "box_head_fc_dim", "box_head_num_fc",
        "mask_head_conv_dim", "mask_head_num_conv", "test_score_threshold",
        "test_nms_threshold", "detections_per_image", "test_min_box_size",
        "unused_class_slots")},
    "stuff_head_channels": "stuff_branch.channels",
    "semantic_supervision": "stuff_branch.supervision",
    "srm_kernel": "srm.kernel", "srm_kernel_size": "srm.kernel_size", "srm_stride": "srm.stride"}

# Limits of what a machine holds, checked when a config loads. TensorFlow takes counts and
# sizes as int32 (shapes, top_k's k, tf.range) and its GPU kernels index a tensor's elements
# with int32: no count, and no tensor whose size a config sets, may go beyond this.
INT32_MAX = 2**31 - 1
# Reals become float32 in the graph: a larger magnitude would be infinite there.
FLOAT32_MAX = (2 - 2**-23) * 2.0**127
IMAGE_CHANNELS = 3  # RGB
# The largest export.max_image_side: one decoded [side, side, 3] image, padded to a multiple
# of SIZE_DIVISIBILITY, within INT32_MAX elements (26752).
MAX_IMAGE_SIDE = math.isqrt(INT32_MAX // IMAGE_CHANNELS) // SIZE_DIVISIBILITY * SIZE_DIVISIBILITY
# YAML nesting a config needs: the document, a section, a subsection or list (model.rpn,
# data.buckets), a list in it (a bucket's [height, width]) and a value.
MAX_YAML_DEPTH = 5


def _numbers(key: str, value) -> list:
    """The numbers of a field's value: itself, or every item of a (nested) list, which must
    hold numbers only; none for a string or boolean."""
    if isinstance(value, (list, tuple)):
        items = list(_flatten(value))
        if any(isinstance(item, bool) or not isinstance(item, (int, float)) for item in items):
            raise ConfigError(f"{key}: expected numbers, got {_to_plain(value)}")
        return items
    return [] if isinstance(value, bool) or not isinstance(value, (int, float)) else [value]


def _flatten(items):
    for item in items:
        yield from _flatten(item) if isinstance(item, (list, tuple)) else (item,)


def _check_numbers(key: str, value):
    """Every number of `value` finite and within what TensorFlow holds (int32, float32)."""
    for number in _numbers(key, value):
        if isinstance(number, float) and not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got NaN or infinity")
        kind, limit = ("int32", INT32_MAX) if isinstance(number, int) else ("float32", FLOAT32_MAX)
        if abs(number) > limit:
            shown = f"{limit:,}" if kind == "int32" else f"{limit:.7g}"
            raise ConfigError(f"{key}: {number} lies beyond {kind}'s range (magnitude at most "
                              f"{shown}), which TensorFlow computes in")


def _rule(holds, problem: str):
    """A field's rule: ConfigError '{key}: {problem}, got {value}' unless every number of the
    value `holds`."""
    def check(key: str, value):
        if not all(holds(number) for number in _numbers(key, value)):
            raise ConfigError(f"{key}: {problem}, got {_shown(value)}")
    return check


def _shown(value):
    """A value as a config writes it: lists as lists, whole floats without their '.0'."""
    if isinstance(value, (list, tuple)):
        return [_shown(item) for item in value]
    return int(value) if isinstance(value, float) and value.is_integer() else value


POSITIVE = _rule(lambda v: v > 0, "must be positive")
NON_NEGATIVE = _rule(lambda v: v >= 0, "must not be negative")
OFF_OR_POSITIVE = _rule(lambda v: v >= 0, "must not be negative (0 turns it off)")
UNIT_INTERVAL = _rule(lambda v: 0 <= v <= 1, "must lie between 0 and 1")
FRACTION = _rule(lambda v: 0 < v <= 1, "must lie in (0, 1]")
STAGES = _rule(lambda v: 0 <= v <= RESNET_STAGES,
               f"must be a number of stages from 0 to {RESNET_STAGES}")


def one_of(choices: tuple):
    """A field's rule: its value is one of `choices`."""
    def check(key: str, value):
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}")
    return check


def setting(default, rule=None):
    """A section's field: its default and the rule its values obey (checked at load)."""
    return field(default=default, metadata={"rule": rule} if rule else {})


def section(cls):
    """A section's field holding a nested section."""
    return field(default_factory=cls)


class Section:
    """A config section: a dataclass whose fields declare their rules (`setting`); rules
    between its fields go in `check`. Every number must be finite and fit TensorFlow's int32
    or float32 besides."""

    def validate(self, where: str = ""):
        """ConfigError naming the full dotted key of the first value out of its range."""
        for item in dataclasses.fields(self):
            key = f"{where}.{item.name}" if where else item.name
            value = getattr(self, item.name)
            if isinstance(value, Section):
                value.validate(key)
                continue
            _check_numbers(key, value)
            rule = item.metadata.get("rule")
            if rule:
                rule(key, value)
        self.check(where)

    def check(self, where: str):
        """Rules between this section's fields (none unless a section overrides it)."""


@dataclass
class SplitConfig(Section):
    """Where one split of a COCO panoptic dataset lives on disk."""

    image_dir: str = ""
    panoptic_json: str = ""
    panoptic_dir: str = ""
    # COCO *instances* JSON (polygons or RLE) with overlapping masks: the paper's setting.
    # Empty: instance masks are derived from the panoptic PNG (Table 3, "pano-instance GT").
    instances_json: str = ""
    # Sharded TFRecords written by `python -m oanet_tf convert-tfrecords` (read instead of the
    # files above when set; sharded by file across workers).
    tfrecord_dir: str = ""
    # Let the JSON's file names lead out of image_dir / panoptic_dir (absolute paths, '..',
    # symlinks out of the folder); off, such a name is refused.
    allow_outside_paths: bool = False


@dataclass
class DataConfig(Section):
    train: SplitConfig = section(SplitConfig)
    val: SplitConfig = section(SplitConfig)
    # Synthetic dataset read by a split that names no files: written by `python -m oanet_tf
    # make-synthetic` (the demo runs it); a split reading it before then is refused.
    synthetic_dir: str = "data/synthetic"
    synthetic_train: int = setting(300, NON_NEGATIVE)
    synthetic_val: int = setting(50, NON_NEGATIVE)
    synthetic_size: tuple = setting((128, 128), POSITIVE)
    synthetic_seed: int = 0
    # Resizing: shorter side to `short_side` (times a jitter in `scale_jitter` when training),
    # longer side at most `max_side`. A batch holds images of one orientation (landscape or
    # portrait) and is zero-padded to its largest image, rounded up to a multiple of
    # SIZE_DIVISIBILITY. With `buckets` ([height, width] pairs, multiples of
    # SIZE_DIVISIBILITY) each image goes to the smallest bucket that holds it and a batch is
    # padded to its bucket: a few static shapes, as XLA needs (train.jit_compile: true).
    # Both sides at most export.max_image_side.
    short_side: int = setting(800, POSITIVE)
    max_side: int = setting(1333, POSITIVE)
    buckets: tuple = ()
    scale_jitter: tuple = setting((1.0, 1.0), POSITIVE)
    horizontal_flip: bool = True
    max_instances: int = setting(100, POSITIVE)
    # Skip unreadable or inconsistent images (counted and reported) instead of stopping.
    skip_bad_images: bool = False
    # See ROUND_NEAREST / ROUND_DOWN: torchvision floors.
    resize_rounding: str = setting(ROUND_NEAREST, one_of(RESIZE_ROUNDINGS))
    # RGB value (0..255) of the padding around each image in a batch: zero (black), or the
    # pixel mean where the model was trained with mean-valued padding (torchvision pads its
    # normalised images with 0, i.e. the ImageNet mean).
    pad_value: tuple = setting((0.0, 0.0, 0.0), _rule(lambda v: 0 <= v <= MAX_PIXEL_VALUE,
                                                      f"must lie in 0..{MAX_PIXEL_VALUE:g}"))
    # TFRecords only: records mixed after each epoch's permutation of the shard files (COCO
    # files are read in a full permutation of the images each epoch).
    shuffle_buffer: int = setting(256, NON_NEGATIVE)
    num_parallel_calls: int = -1  # AUTOTUNE_SETTING (tf.data.AUTOTUNE) or a thread count

    def check(self, where: str):
        if self.num_parallel_calls != AUTOTUNE_SETTING and self.num_parallel_calls < 1:
            raise ConfigError(f"{where}.num_parallel_calls: must be {AUTOTUNE_SETTING} "
                              f"(automatic) or positive, got {self.num_parallel_calls}")
        low_high = self.scale_jitter
        if len(low_high) != 2 or low_high[0] > low_high[1]:
            raise ConfigError(f"{where}.scale_jitter: expected [low, high], positive numbers "
                              f"with low <= high, got {list(low_high)}")
        if len(self.pad_value) != 3:
            raise ConfigError(f"{where}.pad_value: expected an RGB value [r, g, b] in "
                              f"0..{MAX_PIXEL_VALUE:g}, got {list(self.pad_value)}")
        self.pad_value = tuple(float(v) for v in self.pad_value)
        if len(self.synthetic_size) != 2:
            raise ConfigError(f"{where}.synthetic_size: expected [height, width] of positive "
                              f"integers, got {list(self.synthetic_size)}")
        for bucket in self.buckets:
            if (not isinstance(bucket, (list, tuple)) or len(bucket) != 2
                    or any(not isinstance(s, int) or s <= 0 or s % SIZE_DIVISIBILITY
                           for s in bucket)):
                raise ConfigError(f"{where}.buckets: {_to_plain(bucket)} is not [height, width] "
                                  f"of positive multiples of {SIZE_DIVISIBILITY}")
        self.buckets = tuple(tuple(bucket) for bucket in self.buckets)

    def padded_pixels(self, jitter: float) -> int:
        """The most pixels of one padded image: the largest bucket's, or those of a square of
        max_side * jitter rounded up to SIZE_DIVISIBILITY (leftovers mix orientations)."""
        if self.buckets:
            return max(height * width for height, width in self.buckets)
        side = -(-math.ceil(self.max_side * jitter) // SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY
        return side * side


@dataclass
class BackboneConfig(Section):
    name: str = setting(RESNET50, one_of(BACKBONES))
    # Where a ResNet backbone starts: "imagenet" (keras.applications downloads it once into
    # its cache), a local weights file (its "notop" .h5), or "none" (from scratch, on
    # purpose). Training a ResNet refuses an empty value. small_resnet has no pretrained
    # weights: "" or "none".
    weights: str = ""
    # With pretrained weights: the first stages kept frozen, as Detectron2's FREEZE_AT (0 none,
    # 1 the stem, 2 the stem and res2, ... 5 all); batch norm is frozen in every stage.
    freeze_at: int = setting(2, STAGES)
    # Where a bottleneck block strides: "1x1" (keras.applications' ResNets, Caffe2) or "3x3"
    # (torchvision; its own Keras ResNet, no keras.applications weights).
    stride_in: str = setting(STRIDE_IN_1X1, one_of(BOTTLENECK_STRIDES))
    # "caffe_bgr" or "imagenet_rgb" (torchvision); see PIXEL_NORMALIZATIONS.
    pixel_normalization: str = setting(CAFFE_BGR, one_of(PIXEL_NORMALIZATIONS))
    small_resnet_widths: tuple = setting((32, 64, 128, 256), POSITIVE)
    small_resnet_blocks: tuple = setting((1, 1, 1, 1), POSITIVE)

    def check(self, where: str):
        if self.name == SMALL_RESNET and self.weights not in ("", NO_BACKBONE_WEIGHTS):
            raise ConfigError(f"{where}.weights: {self.weights!r}, but {SMALL_RESNET} has no "
                              f"pretrained weights: leave it empty or {NO_BACKBONE_WEIGHTS}")
        if (self.stride_in == STRIDE_IN_3X3 and self.name != SMALL_RESNET
                and self.weights == IMAGENET_WEIGHTS):
            raise ConfigError(f"{where}.weights: {IMAGENET_WEIGHTS} are keras.applications' "
                              f"weights, for a ResNet that strides in the 1x1 convolution; with "
                              f"{where}.stride_in {STRIDE_IN_3X3} start from a converted model "
                              f"(model.init_from) or {NO_BACKBONE_WEIGHTS}")


# The sections below are the arguments of their component (modeling/builder.py passes them
# whole): a field's name is its constructor argument's.
@dataclass
class FPNConfig(Section):
    channels: int = setting(256, POSITIVE)


@dataclass
class RPNConfig(Section):
    conv_channels: int = setting(256, POSITIVE)
    anchor_sizes: tuple = setting((32, 64, 128, 256, 512), POSITIVE)
    anchor_aspect_ratios: tuple = setting((0.5, 1.0, 2.0), POSITIVE)
    # Anchor centres at (index + anchor_offset) * stride: 0.5 (cell centres, Detectron2's
    # default 0.0 aside) or 0.0 (torchvision).
    anchor_offset: float = setting(0.5, UNIT_INTERVAL)
    anchor_cells: str = setting(EXACT_CELLS, one_of(ANCHOR_CELLS))  # see ANCHOR_CELLS
    # IoU below the first: negative anchor; at or above the second: positive.
    iou_thresholds: tuple = setting((0.3, 0.7), UNIT_INTERVAL)
    batch_size_per_image: int = setting(256, POSITIVE)
    positive_fraction: float = setting(0.5, UNIT_INTERVAL)
    pre_nms_topk_train: int = setting(2000, POSITIVE)
    post_nms_topk_train: int = setting(1000, POSITIVE)
    pre_nms_topk_test: int = setting(1000, POSITIVE)
    post_nms_topk_test: int = setting(1000, POSITIVE)
    nms_threshold: float = setting(0.7, UNIT_INTERVAL)
    # Proposal NMS per FPN level (Detectron2, torchvision) or over all levels at once.
    nms_per_level: bool = True
    # Proposals with a side below this (pixels) are dropped before NMS; 0 drops empty ones
    # only (Detectron2); torchvision: 1e-3.
    min_box_size: float = setting(0.0, NON_NEGATIVE)

    def check(self, where: str):
        low_high = self.iou_thresholds
        if len(low_high) != 2 or low_high[0] > low_high[1]:
            raise ConfigError(f"{where}.iou_thresholds: expected [low, high] with low <= high, "
                              f"got {list(low_high)}")


@dataclass
class RoIHeadsConfig(Section):
    """Box and mask heads, their poolers, and the detections kept at test time."""

    batch_size_per_image: int = setting(512, POSITIVE)
    positive_fraction: float = setting(0.25, UNIT_INTERVAL)
    iou_threshold: float = setting(0.5, UNIT_INTERVAL)
    box_coder_weights: tuple = setting((10.0, 10.0, 5.0, 5.0), POSITIVE)
    box_pooler_resolution: int = setting(7, POSITIVE)
    mask_pooler_resolution: int = setting(14, POSITIVE)
    pooler_sampling_ratio: int = setting(2, POSITIVE)
    # RoIAlign's half-pixel shift (Detectron2's aligned=True); torchvision's MultiScaleRoIAlign
    # runs aligned=False.
    roi_align_aligned: bool = True
    box_head_fc_dim: int = setting(1024, POSITIVE)
    box_head_num_fc: int = setting(2, POSITIVE)
    mask_head_conv_dim: int = setting(256, POSITIVE)
    mask_head_num_conv: int = setting(4, POSITIVE)
    test_score_threshold: float = setting(0.05, UNIT_INTERVAL)
    test_nms_threshold: float = setting(0.5, UNIT_INTERVAL)
    detections_per_image: int = setting(100, POSITIVE)
    # Detections with a side below this (pixels) are dropped before NMS (0: none are;
    # torchvision: 1e-2).
    test_min_box_size: float = setting(0.0, NON_NEGATIVE)
    # Class logits beyond background and the things: they take part in the softmax, are never
    # detected and are trained as negatives (torchvision's COCO model has 10 such "N/A" slots
    # among its 91; a converted model keeps them so that its scores are torchvision's).
    unused_class_slots: int = setting(0, NON_NEGATIVE)


@dataclass
class StuffBranchConfig(Section):
    """The stuff branch (paper Figure 3)."""

    channels: int = setting(128, POSITIVE)
    # "all": every category is a semantic class (object context, Table 2);
    # "stuff_plus_things": stuff classes plus one "things" class.
    supervision: str = setting(ALL_CATEGORIES, one_of(SEMANTIC_SUPERVISIONS))


@dataclass
class SRMConfig(Section):
    """The spatial ranking module (paper 3.2, Table 5)."""

    kernel: str = setting(GCN_KERNEL, one_of(SRM_KERNELS))  # 1x1, 3x3 or gcn (1xk + kx1)
    kernel_size: int = setting(7, POSITIVE)
    stride: int = setting(1, POSITIVE)


@dataclass
class ModelConfig(Section):
    backbone: BackboneConfig = section(BackboneConfig)
    # A model dir written by `train` or `convert` whose weights start training (the backbone
    # then counts as pretrained: frozen stages and batch norm). Empty: none.
    init_from: str = ""
    # Table 4 sharing modes: none (two backbones), backbone, backbone_fpn (default).
    sharing: str = setting(SHARED_BACKBONE_FPN, one_of(SHARING_MODES))
    fpn: FPNConfig = section(FPNConfig)
    rpn: RPNConfig = section(RPNConfig)
    roi_heads: RoIHeadsConfig = section(RoIHeadsConfig)
    stuff_branch: StuffBranchConfig = section(StuffBranchConfig)
    srm: SRMConfig = section(SRMConfig)


@dataclass
class TrainConfig(Section):
    batch_size: int = setting(16, POSITIVE)  # global batch
    epochs: int = setting(1, POSITIVE)
    steps_per_epoch: int = setting(100000, POSITIVE)
    # SGD as in the paper; the learning rate scales linearly with the global batch.
    base_learning_rate: float = setting(0.02, POSITIVE)
    reference_batch_size: int = setting(16, POSITIVE)
    momentum: float = setting(0.9, UNIT_INTERVAL)
    # L2 added to the gradient before momentum, as the paper and Detectron2 (not Keras'
    # decoupled decay), on every weight but normalisation parameters; biases included.
    weight_decay: float = setting(1e-4, NON_NEGATIVE)
    warmup_steps: int = setting(2000, NON_NEGATIVE)
    warmup_start_learning_rate: float = setting(0.002, NON_NEGATIVE)
    decay_steps: tuple = setting((60000, 80000), POSITIVE)
    decay_factor: float = setting(0.1, FRACTION)
    seg_loss_weight: float = setting(0.25, NON_NEGATIVE)  # lambda of Eq. 1
    srm_loss_weight: float = setting(1.0, NON_NEGATIVE)
    mixed_precision: str = setting("float32", one_of(MIXED_PRECISIONS))
    jit_compile: str = setting("auto", one_of(JIT_SETTINGS))
    seed: int = 0
    deterministic: bool = False
    eval_every_epochs: int = setting(1, POSITIVE)
    # Step-level monitoring, for epochs too long to wait for (0 = off). Steps count over the
    # whole run, so a resumed run goes on counting. TensorBoard scalars (logs/steps) every
    # this many steps: each loss term's mean over those steps, learning rate, images/s.
    log_every_steps: int = setting(20, OFF_OR_POSITIVE)
    # PQ on val (logs/eval) every this many steps, besides the evaluations at epoch ends, on
    # the split's first `eval_step_images` images (0: as at epoch ends, eval.max_images).
    eval_every_steps: int = setting(0, OFF_OR_POSITIVE)
    eval_step_images: int = setting(0, OFF_OR_POSITIVE)
    # checkpoints/last and checkpoints/best every this many steps, besides epoch ends; best
    # keeps the lowest val_loss, measured by a validation pass at each of these steps.
    checkpoint_every_steps: int = setting(0, OFF_OR_POSITIVE)
    # What to do with a non-finite loss: "skip" the step or "stop" training.
    on_nonfinite_loss: str = setting("stop", one_of(NONFINITE_ACTIONS))
    # Backups for resuming after a crash (MODEL_DIR/backup): every this many steps and at
    # each epoch end.
    backup_every_steps: int = setting(200, POSITIVE)

    def check(self, where: str):
        if any(not isinstance(step, int) for step in self.decay_steps):
            raise ConfigError(f"{where}.decay_steps: expected positive integers, got "
                              f"{list(self.decay_steps)}")


@dataclass
class EvalConfig(Section):
    # Merge order for overlapping instances: ranking (OANet), detection (heuristic), product.
    merge_order: str = setting(RANKING, one_of(MERGE_ORDERS))
    overlap_threshold: float = setting(0.5, UNIT_INTERVAL)
    instance_score_threshold: float = setting(0.5, UNIT_INTERVAL)
    min_stuff_area: int = setting(4900, NON_NEGATIVE)
    # per_class: a stuff class with fewer free pixels than min_stuff_area in an image is left
    # void; per_region: each connected region (8-connected) of a stuff class is, instead
    # (the paper's rule; +1.3 PQ_St on the synthetic val set, docs/results.md).
    stuff_area_rule: str = setting(PER_REGION, one_of(STUFF_AREA_RULES))
    # all_detections: the SRM ranks every detection; mergeable: only those with score >=
    # instance_score_threshold enter the SRM's input (the others cannot be merged anyway;
    # +3.3 PQ_Th, +4.1 points of ownership accuracy on the synthetic val set, docs/results.md).
    srm_input: str = setting(SRM_MERGEABLE, one_of(SRM_INPUTS))
    max_images: int = setting(0, NON_NEGATIVE)  # 0 = all
    # Images per batch of PQ evaluation (during training, `evaluate`, the demo), on one
    # device: pasted masks take [batch, detections, H, W] floats.
    batch_size: int = setting(2, POSITIVE)


@dataclass
class ExportConfig(Section):
    export_dir: str = "saved_models/oanet"
    # The longest side of an image serving accepts (before resizing): at most MAX_IMAGE_SIDE.
    max_image_side: int = setting(8192, _rule(lambda v: 0 < v <= MAX_IMAGE_SIDE,
                                              f"must lie between 1 and {MAX_IMAGE_SIDE}"))
    # Pixels of all the images of one request together, read from their headers before any
    # is decoded: a request takes about 20 bytes per pixel while it is decoded and resized
    # (16 JPEGs of 4000x3000, 192 Mpx, added 4 GB), so this bound (one image of the largest
    # side, 64 Mpx) keeps a request near 1.4 GB.
    max_request_pixels: int = setting(8192 * 8192, POSITIVE)


@dataclass
class Config(Section):
    model: ModelConfig = section(ModelConfig)
    data: DataConfig = section(DataConfig)
    train: TrainConfig = section(TrainConfig)
    eval: EvalConfig = section(EvalConfig)
    export: ExportConfig = section(ExportConfig)

    def to_dict(self) -> dict:
        return _to_plain(dataclasses.asdict(self))

    def check(self, where: str):
        if self.train.jit_compile == "true" and not self.data.buckets:
            raise ConfigError("train.jit_compile: true needs data.buckets: XLA compiles one "
                              "graph per input shape, and without buckets every batch has its "
                              "own")
        _check_sizes(self)


def _check_sizes(config: Config):
    """Image sides within what serving accepts, and each tensor whose size the config sets
    within INT32_MAX elements (the float32 image batch: 8 GiB); ConfigError naming the key
    whose value makes one too big. pre_nms_topk is clipped to the anchors there are: int32
    is its only bound. Memory beyond these depends on the device (TensorFlow reports what it
    cannot allocate)."""
    data, model = config.data, config.model
    for key in ("short_side", "max_side"):
        if getattr(data, key) > config.export.max_image_side:
            raise ConfigError(f"data.{key}: {getattr(data, key)} is above "
                              f"export.max_image_side ({config.export.max_image_side})")
    train_pixels = data.padded_pixels(data.scale_jitter[1])
    eval_pixels = data.padded_pixels(1.0)
    pooled = model.roi_heads.box_pooler_resolution ** 2 * model.fpn.channels
    batch, eval_batch = config.train.batch_size, config.eval.batch_size
    training = f"of a batch of train.batch_size ({batch}) images"
    evaluating = f"of a batch of eval.batch_size ({eval_batch}) images"
    tensors = (  # key, its value, the elements of a tensor per unit of it, that tensor
        ("train.batch_size", batch, IMAGE_CHANNELS * train_pixels,
         "the float32 padded images [batch, H, W, 3]"),
        ("eval.batch_size", eval_batch, IMAGE_CHANNELS * eval_pixels,
         "the float32 padded images [batch, H, W, 3]"),
        ("data.max_instances", data.max_instances, train_pixels,
         "an image's ground-truth masks [instances, H, W]"),
        ("model.roi_heads.detections_per_image", model.roi_heads.detections_per_image,
         eval_batch * eval_pixels, f"the pasted masks {evaluating} [batch, detections, H, W]"),
        ("model.rpn.post_nms_topk_train", model.rpn.post_nms_topk_train,
         batch * data.max_instances,
         f"the proposals' IoU with the instances {training} [batch, proposals, instances]"),
        ("model.roi_heads.batch_size_per_image", model.roi_heads.batch_size_per_image,
         batch * pooled, f"the pooled RoIs {training} [batch * RoIs, R, R, channels]"),
        ("model.rpn.post_nms_topk_test", model.rpn.post_nms_topk_test, eval_batch * pooled,
         f"the pooled proposals {evaluating} [batch * proposals, R, R, channels]"))
    for key, value, per_unit, tensor in tensors:
        if value * per_unit > INT32_MAX:
            raise ConfigError(
                f"{key}: {value} makes {tensor} {value * per_unit:,} elements, beyond the "
                f"{INT32_MAX:,} that TensorFlow indexes with int32: at most "
                f"{INT32_MAX // per_unit:,} at these sizes")


def _to_plain(value):
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _coerce(value: Any, target_type, where: str):
    """Convert a YAML value to the declared field type, or raise naming the key."""
    origin = typing.get_origin(target_type)
    if target_type is tuple or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(value)
    if target_type is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if target_type is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if target_type is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if target_type is str:
        if value is None:
            return ""
        if isinstance(value, bool):  # YAML reads `false` as a boolean: keep the word
            return "true" if value else "false"
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def _moved(path: str) -> str:
    """' (now model.x.y)' where `path` is a key of the flat model layout, '' otherwise."""
    section_name, _, key = path.partition(".")
    if section_name == "model" and key in FLAT_MODEL_KEYS:
        return f" (now model.{FLAT_MODEL_KEYS[key]})"
    return ""


def _merge_into(obj, updates: dict, where: str):
    if not isinstance(updates, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {updates!r}"
                          f"{_moved(where)}")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    retired = {key for key in updates if (f"{where}.{key}" if where else key) in RETIRED_KEYS}
    for key in sorted(retired):
        path = f"{where}.{key}" if where else key
        warnings.warn(f"{path} is no longer a setting and is ignored: {RETIRED_KEYS[path]}",
                      stacklevel=2)
    unknown = sorted(set(updates) - names - retired)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key(s): {', '.join(prefix + k + _moved(prefix + k) for k in unknown)}"
            f"; valid keys{' of ' + where if where else ''}: {', '.join(sorted(names))}")
    for key, value in updates.items():
        if key in retired:
            continue
        path = f"{where}.{key}" if where else key
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge_into(current, value, path)
        else:
            setattr(obj, key, _coerce(value, hints[key], path))


def translate_flat_model_keys(data, where: str):
    """A config read in the flat model layout (`model.rpn_nms_threshold`: the config.yaml of
    a model dir written before the model had a section per component) in today's
    (`model.rpn.nms_threshold`), with a warning naming `where`: the model dir loads as
    before, and whoever keeps a config of their own in that layout learns to update it."""
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict):
        return data
    flat = [key for key in model if key in FLAT_MODEL_KEYS
            and not (key == "backbone" and isinstance(model[key], dict))]
    if not flat:
        return data
    nested = {key: (dict(value) if isinstance(value, dict) else value)
              for key, value in model.items() if key not in flat}
    for key in flat:
        section_name, name = FLAT_MODEL_KEYS[key].split(".")
        target = nested.setdefault(section_name, {})
        if not isinstance(target, dict) or name in target:
            raise ConfigError(f"{where}: model.{key} and model.{FLAT_MODEL_KEYS[key]} both "
                              f"given: keep model.{FLAT_MODEL_KEYS[key]}")
        target[name] = model[key]
    warnings.warn(f"{where}: read in the flat model layout of earlier versions "
                  f"(model.{flat[0]} is now model.{FLAT_MODEL_KEYS[flat[0]]}; "
                  f"{len(flat)} such keys); save_config writes today's layout", stacklevel=3)
    return {**data, "model": nested}


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases (a few hundred bytes of anchors and aliases
    expand to gigabytes, and a config has no use for them) and without nesting deeper than
    MAX_YAML_DEPTH (the composer recurses once per level)."""

    def __init__(self, stream):
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent, index):
        line = self.peek_event().start_mark.line + 1
        if self.check_event(yaml.AliasEvent):
            raise ConfigError(f"line {line}: an alias (*{self.peek_event().anchor}): configs "
                              f"refuse aliases; write the value out")
        if self.depth == MAX_YAML_DEPTH:
            raise ConfigError(f"line {line}: nested deeper than {MAX_YAML_DEPTH} levels, "
                              f"deeper than any config key")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def read_yaml(text, where: str):
    """The YAML document of `text` (a string or file), refusing aliases and deep nesting;
    ConfigError naming `where` otherwise."""
    loader = _ConfigLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML: {err}") from None
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    finally:
        loader.dispose()


def validate_for_training(config: Config):
    """What only training refuses: a ResNet with no stated start (an empty
    model.backbone.weights would silently train from random weights, batch norm included)."""
    model, backbone = config.model, config.model.backbone
    if model.init_from and not os.path.isdir(model.init_from):
        raise ConfigError(f"model.init_from: {model.init_from}: no such model dir")
    if backbone.name != SMALL_RESNET and not backbone.weights and not model.init_from:
        raise ConfigError(
            f"model.backbone.weights is empty: say where {backbone.name} starts from: "
            f"{IMAGENET_WEIGHTS} (keras.applications' ImageNet weights, as the paper), a local "
            f"weights file, {NO_BACKBONE_WEIGHTS} to train from scratch on purpose "
            f"(then batch norm trains too, on a few images per device), or set "
            f"model.init_from to a model dir (a converted torchvision model)")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse `section.key=value` (value in YAML syntax) into (path, value)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if len(path) < 2:
        raise ConfigError(f"--set {text!r}: the key must name a section and a field, "
                          f"for example train.batch_size=8")
    value = read_yaml(raw, f"--set {text!r}: the value") if raw.strip() else ""
    return path, value


def load_config(path: Optional[str] = None, overrides: Optional[list[str]] = None) -> Config:
    """Load a YAML config (or the defaults), then apply `section.key=value` overrides."""
    config = Config()
    if path:
        if not os.path.isfile(path):
            raise ConfigError(f"config file not found: {path}")
        with open(path, encoding="utf-8") as f:
            data = translate_flat_model_keys(read_yaml(f, path) or {}, path)
        try:
            _merge_into(config, data, "")
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
    for text in overrides or []:
        keys, value = parse_override(text)
        nested: Any = value
        for key in reversed(keys):
            nested = {key: nested}
        try:
            _merge_into(config, nested, "")
        except ConfigError as err:
            raise ConfigError(f"--set {text}: {err}") from None
    config.validate()
    return config


def save_config(config: Config, path: str):
    """Write the resolved config as YAML (atomically), next to checkpoints and exports."""
    with atomic_open(path) as f:
        yaml.safe_dump(config.to_dict(), f, sort_keys=False)
