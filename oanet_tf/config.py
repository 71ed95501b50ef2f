"""Typed configuration: YAML files in configs/ loaded into dataclasses.

Config values live here and in configs/*.yaml only; commands turn them into constructor
arguments in one place (`oanet_tf.modeling.builder`, `oanet_tf.data.pipeline`).
Unknown keys are rejected with a message that names them, so a typo never passes silently.
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
# Where a ResNet backbone starts (model.backbone_weights), besides a local weights file:
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
# return (score >= model.test_score_threshold), or only those the merge may draw (score >=
# eval.instance_score_threshold).
SRM_ALL_DETECTIONS, SRM_MERGEABLE = "all_detections", "mergeable"
SRM_INPUTS = (SRM_ALL_DETECTIONS, SRM_MERGEABLE)
# What eval.min_stuff_area bounds (eval.stuff_area_rule): the free pixels of each stuff class
# in an image, or each connected region of one stuff class (the paper's "connected stuff area").
PER_CLASS, PER_REGION = "per_class", "per_region"
STUFF_AREA_RULES = (PER_CLASS, PER_REGION)
# Where a ResNet bottleneck block strides (model.bottleneck_stride_in): in its first 1x1
# convolution (Caffe2, Detectron2, keras.applications) or in its 3x3 (torchvision, "ResNet v1.5").
STRIDE_IN_1X1, STRIDE_IN_3X3 = "1x1", "3x3"
BOTTLENECK_STRIDES = (STRIDE_IN_1X1, STRIDE_IN_3X3)
# How pixels are normalised before the backbone (model.pixel_normalization): BGR minus the
# ImageNet mean in 0..255 (Caffe, keras.applications' ResNets) or RGB in [0, 1] minus the
# ImageNet mean, divided by its std (torchvision).
CAFFE_BGR, IMAGENET_RGB = "caffe_bgr", "imagenet_rgb"
PIXEL_NORMALIZATIONS = (CAFFE_BGR, IMAGENET_RGB)
# How an anchor's cell (its box around the location) is made (model.anchor_cells): exact
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
# Keys of earlier versions -> what replaced them: a config naming one (such as the config.yaml
# of a run trained before) loads with a warning that says so.
RETIRED_KEYS = {"data.padded_size": "batches are now padded to their largest image; "
                                    "data.buckets gives static shapes where XLA needs them"}
# Value ranges, checked when a config is loaded (before a run writes anything). Every number
# of a config must be finite besides.
POSITIVE_KEYS = (
    "data.short_side", "data.max_side", "data.max_instances", "train.batch_size",
    "train.epochs", "train.steps_per_epoch", "train.base_learning_rate",
    "train.reference_batch_size", "train.eval_every_epochs", "train.backup_every_steps",
    "train.decay_factor", "export.max_image_side", "export.max_request_pixels",
    "model.fpn_channels",
    "model.rpn_conv_channels", "model.rpn_batch_size_per_image", "model.rpn_pre_nms_topk_train",
    "model.rpn_post_nms_topk_train", "model.rpn_pre_nms_topk_test",
    "model.rpn_post_nms_topk_test", "model.roi_batch_size_per_image",
    "model.box_pooler_resolution", "model.mask_pooler_resolution",
    "model.pooler_sampling_ratio", "model.box_head_fc_dim", "model.box_head_num_fc",
    "model.mask_head_conv_dim", "model.mask_head_num_conv", "model.detections_per_image",
    "model.stuff_head_channels", "model.srm_kernel_size", "model.srm_stride")
NON_NEGATIVE_KEYS = (
    "data.synthetic_train", "data.synthetic_val", "data.shuffle_buffer", "train.momentum",
    "train.weight_decay", "train.warmup_steps", "train.warmup_start_learning_rate",
    "train.seg_loss_weight", "train.srm_loss_weight", "eval.min_stuff_area", "eval.max_images",
    "model.rpn_min_box_size", "model.test_min_box_size", "model.unused_class_slots")
# Fractions and thresholds: between 0 and 1.
UNIT_INTERVAL_KEYS = (
    "train.momentum", "train.decay_factor", "model.rpn_positive_fraction",
    "model.rpn_nms_threshold", "model.roi_positive_fraction", "model.roi_iou_threshold",
    "model.test_score_threshold", "model.test_nms_threshold", "eval.overlap_threshold",
    "eval.instance_score_threshold", "model.anchor_offset")


@dataclass
class SplitConfig:
    """Where one split of a COCO panoptic dataset lives on disk."""

    image_dir: str = ""
    panoptic_json: str = ""
    panoptic_dir: str = ""
    # COCO *instances* JSON (polygons or RLE) with overlapping masks: the paper's setting.
    # Empty: instance masks are derived from the panoptic PNG (Table 3, "pano-instance GT").
    instances_json: str = ""
    # Sharded TFRecords written by scripts/convert_to_tfrecords.py (read instead of the
    # files above when set; sharded by file across workers).
    tfrecord_dir: str = ""
    # Let the JSON's file names lead out of image_dir / panoptic_dir (absolute paths, '..',
    # symlinks out of the folder); off, such a name is refused.
    allow_outside_paths: bool = False


@dataclass
class DataConfig:
    train: SplitConfig = field(default_factory=SplitConfig)
    val: SplitConfig = field(default_factory=SplitConfig)
    # Synthetic dataset used when train/val are empty (the demo): generated on demand.
    synthetic_dir: str = "data/synthetic"
    synthetic_train: int = 300
    synthetic_val: int = 50
    synthetic_size: tuple = (128, 128)
    synthetic_seed: int = 0
    # Resizing: shorter side to `short_side` (times a jitter in `scale_jitter` when training),
    # longer side at most `max_side`. A batch holds images of one orientation (landscape or
    # portrait) and is zero-padded to its largest image, rounded up to a multiple of
    # SIZE_DIVISIBILITY. With `buckets` ([height, width] pairs, multiples of
    # SIZE_DIVISIBILITY) each image goes to the smallest bucket that holds it and a batch is
    # padded to its bucket: a few static shapes, as XLA needs (train.jit_compile: true).
    short_side: int = 800
    max_side: int = 1333
    buckets: tuple = ()
    scale_jitter: tuple = (1.0, 1.0)
    horizontal_flip: bool = True
    max_instances: int = 100
    # Skip unreadable or inconsistent images (counted and reported) instead of stopping.
    skip_bad_images: bool = False
    # See ROUND_NEAREST / ROUND_DOWN: torchvision floors.
    resize_rounding: str = ROUND_NEAREST
    # RGB value (0..255) of the padding around each image in a batch: zero (black), or the
    # pixel mean where the model was trained with mean-valued padding (torchvision pads its
    # normalised images with 0, i.e. the ImageNet mean).
    pad_value: tuple = (0.0, 0.0, 0.0)
    # TFRecords only: records mixed after each epoch's permutation of the shard files (COCO
    # files are read in a full permutation of the images each epoch).
    shuffle_buffer: int = 256
    num_parallel_calls: int = -1  # AUTOTUNE_SETTING (tf.data.AUTOTUNE) or a thread count


@dataclass
class ModelConfig:
    backbone: str = RESNET50  # small_resnet | resnet50 | resnet101
    # Where a ResNet backbone starts: "imagenet" (keras.applications downloads it once into
    # its cache), a local weights file (its "notop" .h5), or "none" (from scratch, on
    # purpose). Training a ResNet refuses an empty value. small_resnet has no pretrained
    # weights: "" or "none".
    backbone_weights: str = ""
    # With pretrained weights: the first stages kept frozen, as Detectron2's FREEZE_AT (0 none,
    # 1 the stem, 2 the stem and res2, ... 5 all); batch norm is frozen in every stage.
    backbone_freeze_at: int = 2
    # Where a bottleneck block strides: "1x1" (keras.applications' ResNets, Caffe2) or "3x3"
    # (torchvision; its own Keras ResNet, no keras.applications weights).
    bottleneck_stride_in: str = STRIDE_IN_1X1
    # "caffe_bgr" or "imagenet_rgb" (torchvision); see PIXEL_NORMALIZATIONS.
    pixel_normalization: str = CAFFE_BGR
    # A model dir written by `train` or `convert` whose weights start training (the backbone
    # then counts as pretrained: frozen stages and batch norm). Empty: none.
    init_from: str = ""
    # Table 4 sharing modes: none (two backbones), backbone, backbone_fpn (default).
    sharing: str = SHARED_BACKBONE_FPN
    small_resnet_widths: tuple = (32, 64, 128, 256)
    small_resnet_blocks: tuple = (1, 1, 1, 1)
    fpn_channels: int = 256
    anchor_sizes: tuple = (32, 64, 128, 256, 512)
    anchor_aspect_ratios: tuple = (0.5, 1.0, 2.0)
    # Anchor centres at (index + anchor_offset) * stride: 0.5 (cell centres, Detectron2's
    # default 0.0 aside) or 0.0 (torchvision).
    anchor_offset: float = 0.5
    anchor_cells: str = EXACT_CELLS  # exact | torchvision (see ANCHOR_CELLS)
    rpn_conv_channels: int = 256
    rpn_iou_thresholds: tuple = (0.3, 0.7)
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_pre_nms_topk_train: int = 2000
    rpn_post_nms_topk_train: int = 1000
    rpn_pre_nms_topk_test: int = 1000
    rpn_post_nms_topk_test: int = 1000
    rpn_nms_threshold: float = 0.7
    # Proposal NMS per FPN level (Detectron2, torchvision) or over all levels at once.
    rpn_nms_per_level: bool = True
    # Proposals with a side below this (pixels) are dropped before NMS; 0 drops empty ones
    # only (Detectron2); torchvision: 1e-3.
    rpn_min_box_size: float = 0.0
    roi_batch_size_per_image: int = 512
    roi_positive_fraction: float = 0.25
    roi_iou_threshold: float = 0.5
    box_coder_weights: tuple = (10.0, 10.0, 5.0, 5.0)
    box_pooler_resolution: int = 7
    mask_pooler_resolution: int = 14
    pooler_sampling_ratio: int = 2
    # RoIAlign's half-pixel shift (Detectron2's aligned=True); torchvision's MultiScaleRoIAlign
    # runs aligned=False.
    roi_align_aligned: bool = True
    box_head_fc_dim: int = 1024
    box_head_num_fc: int = 2
    mask_head_conv_dim: int = 256
    mask_head_num_conv: int = 4
    test_score_threshold: float = 0.05
    test_nms_threshold: float = 0.5
    detections_per_image: int = 100
    # Detections with a side below this (pixels) are dropped before NMS (0: none are;
    # torchvision: 1e-2).
    test_min_box_size: float = 0.0
    # Class logits beyond background and the things: they take part in the softmax, are never
    # detected and are trained as negatives (torchvision's COCO model has 10 such "N/A" slots
    # among its 91; a converted model keeps them so that its scores are torchvision's).
    unused_class_slots: int = 0
    # Stuff branch (paper Figure 3).
    stuff_head_channels: int = 128
    # "all": every category is a semantic class (object context, Table 2);
    # "stuff_plus_things": stuff classes plus one "things" class.
    semantic_supervision: str = ALL_CATEGORIES
    # Spatial ranking module (paper 3.2, Table 5): "1x1", "3x3" or "gcn" (1xk+kx1 paths).
    srm_kernel: str = GCN_KERNEL
    srm_kernel_size: int = 7
    srm_stride: int = 1


@dataclass
class TrainConfig:
    batch_size: int = 16  # global batch
    epochs: int = 1
    steps_per_epoch: int = 100000
    # SGD as in the paper; the learning rate scales linearly with the global batch.
    base_learning_rate: float = 0.02
    reference_batch_size: int = 16
    momentum: float = 0.9
    # L2 added to the gradient before momentum, as the paper and Detectron2 (not Keras'
    # decoupled decay), on every weight but normalisation parameters; biases included.
    weight_decay: float = 1e-4
    warmup_steps: int = 2000
    warmup_start_learning_rate: float = 0.002
    decay_steps: tuple = (60000, 80000)
    decay_factor: float = 0.1
    seg_loss_weight: float = 0.25  # lambda of Eq. 1
    srm_loss_weight: float = 1.0
    mixed_precision: str = "float32"  # float32 | mixed_bfloat16 | mixed_float16
    jit_compile: str = "auto"  # auto | true | false
    seed: int = 0
    deterministic: bool = False
    eval_every_epochs: int = 1
    # Step-level monitoring, for epochs too long to wait for (0 = off). Steps count over the
    # whole run, so a resumed run goes on counting. TensorBoard scalars (logs/steps) every
    # this many steps: each loss term's mean over those steps, learning rate, images/s.
    log_every_steps: int = 20
    # PQ on val (logs/eval) every this many steps, besides the evaluations at epoch ends, on
    # the split's first `eval_step_images` images (0: as at epoch ends, eval.max_images).
    eval_every_steps: int = 0
    eval_step_images: int = 0
    # checkpoints/last and checkpoints/best every this many steps, besides epoch ends; best
    # keeps the lowest val_loss, measured by a validation pass at each of these steps.
    checkpoint_every_steps: int = 0
    # What to do with a non-finite loss: "skip" the step or "stop" training.
    on_nonfinite_loss: str = "stop"
    # Backups for resuming after a crash (MODEL_DIR/backup): every this many steps and at
    # each epoch end.
    backup_every_steps: int = 200


@dataclass
class EvalConfig:
    # Merge order for overlapping instances: ranking (OANet), detection (heuristic), product.
    merge_order: str = RANKING
    overlap_threshold: float = 0.5
    instance_score_threshold: float = 0.5
    min_stuff_area: int = 4900
    # per_class: a stuff class with fewer free pixels than min_stuff_area in an image is left
    # void; per_region: each connected region (8-connected) of a stuff class is, instead
    # (the paper's rule; +1.3 PQ_St on the synthetic val set, README).
    stuff_area_rule: str = PER_REGION
    # all_detections: the SRM ranks every detection; mergeable: only those with score >=
    # instance_score_threshold enter the SRM's input (the others cannot be merged anyway;
    # +3.3 PQ_Th, +4.1 points of ownership accuracy on the synthetic val set, README).
    srm_input: str = SRM_MERGEABLE
    max_images: int = 0  # 0 = all
    # Images per batch of PQ evaluation (during training, `evaluate`, the demo), on one
    # device: pasted masks take [batch, detections, H, W] floats.
    batch_size: int = 2


@dataclass
class ExportConfig:
    export_dir: str = "saved_models/oanet"
    max_image_side: int = 8192
    # Pixels of all the images of one request together, read from their headers before any
    # is decoded: a request takes about 20 bytes per pixel while it is decoded and resized
    # (16 JPEGs of 4000x3000, 192 Mpx, added 4 GB), so this bound (one image of the largest
    # side, 64 Mpx) keeps a request near 1.4 GB.
    max_request_pixels: int = 8192 * 8192


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def to_dict(self) -> dict:
        return _to_plain(dataclasses.asdict(self))


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


def _merge_into(obj, updates: dict, where: str):
    if not isinstance(updates, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {updates!r}")
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
            f"unknown config key(s): {', '.join(prefix + k for k in unknown)}; "
            f"valid keys{' of ' + where if where else ''}: {', '.join(sorted(names))}")
    for key, value in updates.items():
        if key in retired:
            continue
        path = f"{where}.{key}" if where else key
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge_into(current, value, path)
        else:
            setattr(obj, key, _coerce(value, hints[key], path))


def _non_finite(value, where: str):
    """The dotted key of the first NaN or infinite number in `value`, or None."""
    if isinstance(value, dict):
        for key, item in value.items():
            found = _non_finite(item, f"{where}.{key}" if where else key)
            if found:
                return found
    elif isinstance(value, list):
        for item in value:
            found = _non_finite(item, where)
            if found:
                return found
    elif isinstance(value, float) and not math.isfinite(value):
        return where
    return None


def _validate_ranges(config: Config):
    """Every number finite, and the keys of POSITIVE_KEYS, NON_NEGATIVE_KEYS and
    UNIT_INTERVAL_KEYS in their ranges; ConfigError naming the key otherwise."""
    key = _non_finite(config.to_dict(), "")
    if key:
        raise ConfigError(f"{key}: expected a finite number, got NaN or infinity")

    def value_of(key):
        section, name = key.split(".")
        return getattr(getattr(config, section), name)

    for key in POSITIVE_KEYS:
        if not value_of(key) > 0:
            raise ConfigError(f"{key}: must be positive, got {value_of(key)}")
    for key in NON_NEGATIVE_KEYS:
        if value_of(key) < 0:
            raise ConfigError(f"{key}: must not be negative, got {value_of(key)}")
    for key in UNIT_INTERVAL_KEYS:
        if not 0 <= value_of(key) <= 1:
            raise ConfigError(f"{key}: must lie between 0 and 1, got {value_of(key)}")
    workers = config.data.num_parallel_calls
    if workers != AUTOTUNE_SETTING and workers < 1:
        raise ConfigError(f"data.num_parallel_calls: must be {AUTOTUNE_SETTING} (automatic) "
                          f"or positive, got {workers}")
    steps = config.train.decay_steps
    if any(isinstance(step, bool) or not isinstance(step, int) or step <= 0 for step in steps):
        raise ConfigError(f"train.decay_steps: expected positive integers, got {list(steps)}")
    jitter = config.data.scale_jitter
    if (len(jitter) != 2 or any(isinstance(j, bool) or not isinstance(j, (int, float))
                                or j <= 0 for j in jitter) or jitter[0] > jitter[1]):
        raise ConfigError(f"data.scale_jitter: expected [low, high], positive numbers with "
                          f"low <= high, got {list(jitter)}")


def _validate(config: Config):
    _validate_ranges(config)
    choices = {
        "model.backbone": (config.model.backbone, BACKBONES),
        "model.sharing": (config.model.sharing, SHARING_MODES),
        "model.semantic_supervision": (config.model.semantic_supervision,
                                       SEMANTIC_SUPERVISIONS),
        "model.srm_kernel": (config.model.srm_kernel, SRM_KERNELS),
        "train.mixed_precision": (config.train.mixed_precision,
                                  ("float32", "mixed_bfloat16", "mixed_float16")),
        "train.jit_compile": (config.train.jit_compile, ("auto", "true", "false")),
        "train.on_nonfinite_loss": (config.train.on_nonfinite_loss, ("skip", "stop")),
        "eval.merge_order": (config.eval.merge_order, MERGE_ORDERS),
        "eval.stuff_area_rule": (config.eval.stuff_area_rule, STUFF_AREA_RULES),
        "eval.srm_input": (config.eval.srm_input, SRM_INPUTS),
        "model.bottleneck_stride_in": (config.model.bottleneck_stride_in, BOTTLENECK_STRIDES),
        "model.pixel_normalization": (config.model.pixel_normalization,
                                      PIXEL_NORMALIZATIONS),
        "model.anchor_cells": (config.model.anchor_cells, ANCHOR_CELLS),
        "data.resize_rounding": (config.data.resize_rounding, RESIZE_ROUNDINGS),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(allowed)}")
    model = config.model
    if model.backbone == SMALL_RESNET and model.backbone_weights not in ("",
                                                                          NO_BACKBONE_WEIGHTS):
        raise ConfigError(f"model.backbone_weights: {model.backbone_weights!r}, but "
                          f"{SMALL_RESNET} has no pretrained weights: leave it empty or "
                          f"{NO_BACKBONE_WEIGHTS}")
    if (model.bottleneck_stride_in == STRIDE_IN_3X3 and model.backbone != SMALL_RESNET
            and model.backbone_weights == IMAGENET_WEIGHTS):
        raise ConfigError(f"model.backbone_weights: {IMAGENET_WEIGHTS} are keras.applications' "
                          f"weights, for a ResNet that strides in the 1x1 convolution; with "
                          f"model.bottleneck_stride_in {STRIDE_IN_3X3} start from a converted "
                          f"model (model.init_from) or {NO_BACKBONE_WEIGHTS}")
    pad = config.data.pad_value
    if (len(pad) != 3 or any(isinstance(v, bool) or not isinstance(v, (int, float))
                             or not 0 <= v <= MAX_PIXEL_VALUE for v in pad)):
        raise ConfigError(f"data.pad_value: expected an RGB value [r, g, b] in "
                          f"0..{MAX_PIXEL_VALUE:g}, got {list(pad)}")
    config.data.pad_value = tuple(float(v) for v in pad)
    if not 0 <= model.backbone_freeze_at <= RESNET_STAGES:
        raise ConfigError(f"model.backbone_freeze_at: {model.backbone_freeze_at} is not a "
                          f"number of stages from 0 to {RESNET_STAGES}")
    size = config.data.synthetic_size
    if len(size) != 2 or any(int(s) <= 0 for s in size):
        raise ConfigError(f"data.synthetic_size: expected [height, width] of positive "
                          f"integers, got {size}")
    for bucket in config.data.buckets:
        if (not isinstance(bucket, (list, tuple)) or len(bucket) != 2
                or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0
                       or s % SIZE_DIVISIBILITY for s in bucket)):
            raise ConfigError(f"data.buckets: {bucket} is not [height, width] of positive "
                              f"multiples of {SIZE_DIVISIBILITY}")
    config.data.buckets = tuple(tuple(bucket) for bucket in config.data.buckets)
    for key in ("log_every_steps", "eval_every_steps", "eval_step_images",
                "checkpoint_every_steps"):
        if getattr(config.train, key) < 0:
            raise ConfigError(f"train.{key}: {getattr(config.train, key)} is negative "
                              f"(0 turns it off)")
    if config.eval.batch_size < 1:
        raise ConfigError(f"eval.batch_size: {config.eval.batch_size}, needs at least 1 image")
    if config.train.jit_compile == "true" and not config.data.buckets:
        raise ConfigError("train.jit_compile: true needs data.buckets: XLA compiles one graph "
                          "per input shape, and without buckets every batch has its own")


def validate_for_training(config: Config):
    """What only training refuses: a ResNet with no stated start (an empty
    model.backbone_weights would silently train from random weights, batch norm included)."""
    model = config.model
    if model.init_from and not os.path.isdir(model.init_from):
        raise ConfigError(f"model.init_from: {model.init_from}: no such model dir")
    if model.backbone != SMALL_RESNET and not model.backbone_weights and not model.init_from:
        raise ConfigError(
            f"model.backbone_weights is empty: say where {model.backbone} starts from: "
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
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {text!r}: value is not valid YAML: {err}") from None
    return path, value


def load_config(path: Optional[str] = None, overrides: Optional[list[str]] = None) -> Config:
    """Load a YAML config (or the defaults), then apply `section.key=value` overrides."""
    config = Config()
    if path:
        if not os.path.isfile(path):
            raise ConfigError(f"config file not found: {path}")
        with open(path, encoding="utf-8") as f:
            try:
                data = yaml.safe_load(f) or {}
            except yaml.YAMLError as err:
                raise ConfigError(f"{path}: not valid YAML: {err}") from None
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
    _validate(config)
    return config


def save_config(config: Config, path: str):
    """Write the resolved config as YAML (atomically), next to checkpoints and exports."""
    with atomic_open(path) as f:
        yaml.safe_dump(config.to_dict(), f, sort_keys=False)
