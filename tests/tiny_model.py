"""The tiny OANet the tests train and run: a config, categories and a hand-built batch."""

import os

import numpy as np
import tensorflow as tf

from oanet_tf.config import load_config
from oanet_tf.data.panoptic_format import CategoryMap

CATEGORIES = CategoryMap.from_categories([
    {"id": 1, "name": "person", "isthing": 1}, {"id": 2, "name": "tie", "isthing": 1},
    {"id": 10, "name": "sky", "isthing": 0}, {"id": 11, "name": "grass", "isthing": 0}])
SIZE = (64, 64)
SYNTHETIC_CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "synthetic.yaml")
MAX_INSTANCES = 3
# For comparing distributed runs with one device: sampling takes every labelled anchor and
# RoI, so no random draw separates the runs.
EVERYTHING_SAMPLED = ["model.rpn.batch_size_per_image=4096", "model.rpn.positive_fraction=1.0",
                      "model.roi_heads.batch_size_per_image=64",
                      "model.roi_heads.positive_fraction=1.0",
                      "train.warmup_steps=0", "train.batch_size=2",
                      "train.reference_batch_size=2"]
DISTRIBUTED_STEPS = 3
# The overrides of a model that compiles with XLA: static ops, one bucket of the tiny batch's size.
XLA = ("train.jit_compile=true", f"data.buckets=[[{SIZE[0]}, {SIZE[1]}]]")


# The synthetic config's model at its smallest: what tiny_config (and a `train` subprocess's
# --set options) start from.
TINY_MODEL = [
    "model.backbone.small_resnet_widths=[8, 8, 16, 16]", "model.fpn.channels=16",
    "model.rpn.conv_channels=16", "model.roi_heads.box_head_fc_dim=32",
    "model.roi_heads.mask_head_conv_dim=8",
    "model.stuff_branch.channels=8", "model.rpn.pre_nms_topk_train=64",
    "model.rpn.post_nms_topk_train=32", "model.rpn.pre_nms_topk_test=64",
    "model.rpn.post_nms_topk_test=32", "model.roi_heads.batch_size_per_image=16",
    "model.roi_heads.detections_per_image=8"]


def tiny_config(*overrides):
    return load_config(SYNTHETIC_CONFIG, [*TINY_MODEL, *overrides])


def tiny_batch(batch=2):
    """Two images: a person with a tie on top (whole masks overlap), sky above grass."""
    h, w = SIZE
    images = np.zeros((batch, h, w, 3), np.float32)
    masks = np.zeros((batch, MAX_INSTANCES, h, w), np.uint8)
    masks[:, 0, 10:60, 20:44] = 1  # person
    masks[:, 1, 20:40, 28:36] = 1  # tie, inside the person
    boxes = np.zeros((batch, MAX_INSTANCES, 4), np.float32)
    boxes[:, 0] = [10, 20, 60, 44]
    boxes[:, 1] = [20, 28, 40, 36]
    classes = np.zeros((batch, MAX_INSTANCES), np.int32)
    classes[:, :2] = [1, 2]
    semantic = np.full((batch, h, w), 2, np.int32)
    semantic[:, 32:] = 3
    semantic[masks[:, 0] == 1] = 0
    semantic[masks[:, 1] == 1] = 1
    owner = np.full((batch, h, w), 255, np.int32)
    owner[masks[:, 0] == 1] = 0
    owner[masks[:, 1] == 1] = 1
    images[..., 0] = semantic * 60.0
    return {"images": tf.constant(images), "gt_boxes": tf.constant(boxes),
            "gt_classes": tf.constant(classes), "gt_masks": tf.constant(masks),
            "gt_count": tf.constant([2] * batch), "semantic": tf.constant(semantic),
            "owner": tf.constant(owner), "image_size": tf.constant([SIZE] * batch)}
