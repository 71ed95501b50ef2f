"""A learning check on real annotations: the small backbone trains on the two real COCO images
of the shared sample (133 categories, a crowd region, the instances JSON) at a small size,
and on those same images the losses fall and the best-scoring detections move onto the
ground-truth instances of their class. Before and after are measured alike; nothing is
compared with a tuned threshold.
"""

import os

import keras
import numpy as np
import pytest

from oanet_tf.config import load_config
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.data.pipeline import build_dataset
from oanet_tf.evaluation.detection import box_iou
from oanet_tf.modeling.builder import build_oanet
from oanet_tf.training.schedule import build_optimizer
from tests.tiny_model import SYNTHETIC_CONFIG

pytestmark = pytest.mark.slow

STEPS = 30
IMAGES = 2
# The loss terms expected to fall. Not the box term: it is normalised by every sampled RoI
# (Detectron2), so it grows while the RPN learns to propose positives. Not the SRM term:
# the sample's instances come from the panoptic PNG and never overlap, so it is 0.
FALLING_TERMS = ("rpn_cls", "rpn_box", "cls", "mask", "seg")


def _config(sample: str):
    split = {"image_dir": os.path.join(sample, "images"),
             "panoptic_json": os.path.join(sample, "panoptic.json"),
             "panoptic_dir": os.path.join(sample, "panoptic"),
             "instances_json": os.path.join(sample, "instances_from_panoptic.json")}
    return load_config(SYNTHETIC_CONFIG, [
        *(f"data.{name}.{key}={value}" for name in ("train", "val")
          for key, value in split.items()),
        # 640x427 -> 128x192 and 640x360 -> 108x192: one landscape batch of 128x192.
        "data.short_side=128", "data.max_side=192", "data.buckets=[]",
        "data.scale_jitter=[1.0, 1.0]", "data.horizontal_flip=false",
        "model.backbone.small_resnet_widths=[16, 16, 32, 32]", "model.fpn.channels=32",
        "model.rpn.conv_channels=32", "model.roi_heads.box_head_fc_dim=64",
        "model.roi_heads.mask_head_conv_dim=16", "model.stuff_branch.channels=16",
        # Every detection kept, however low its score: before training too there are
        # best-scoring detections to measure.
        "model.roi_heads.test_score_threshold=0.0",
        f"train.batch_size={IMAGES}", f"train.reference_batch_size={IMAGES}",
        "train.warmup_steps=5", "train.decay_steps=[1000]", "train.seed=0"])


def _top_detection_iou(batch, detections) -> float:
    """Mean over the images of: the n best-scoring detections (n = the image's ground-truth
    instances), each's best box IoU with a ground-truth instance of its class."""
    means = []
    for i in range(IMAGES):
        count = int(batch["gt_count"][i])
        gt_boxes = batch["gt_boxes"][i, :count].numpy()
        gt_classes = batch["gt_classes"][i, :count].numpy()
        classes = detections["classes"][i].numpy()
        valid = classes > 0
        order = np.argsort(-detections["scores"][i].numpy()[valid], kind="stable")[:count]
        overlaps = box_iou(detections["boxes"][i].numpy()[valid][order], gt_boxes)
        overlaps[classes[valid][order][:, None] != gt_classes[None, :]] = 0.0
        means.append(float(overlaps.max(axis=1).mean()))
    return float(np.mean(means))


def _measure(model, batch):
    losses = {name: float(value)
              for name, value in model.compute_losses(batch, training=False).items()}
    return losses, _top_detection_iou(batch, model.detect(batch["images"],
                                                          batch["image_size"]))


def test_losses_fall_and_detections_find_the_ground_truth(coco_sample_dir):
    config = _config(coco_sample_dir)
    data = PanopticDataset.from_split(config.data.train)
    assert len(data) == IMAGES and data.categories.num_things == 80
    assert data.categories.num_stuff == 53
    batch = next(iter(build_dataset(data, config.data, training=False, batch_size=IMAGES)))
    assert int(batch["gt_count"].numpy().min()) > 0
    keras.utils.set_random_seed(config.train.seed)
    model = build_oanet(config.model, config.train, data.categories)
    model.compile(optimizer=build_optimizer(config.train, IMAGES), jit_compile=False)
    losses_before, iou_before = _measure(model, batch)

    stream = build_dataset(data, config.data, training=True, batch_size=IMAGES,
                           seed=config.train.seed)
    history = model.fit(stream, epochs=1, steps_per_epoch=STEPS, verbose=0, shuffle=False)
    losses_after, iou_after = _measure(model, batch)
    print(f"real COCO sample, {STEPS} steps: losses before {losses_before}, after "
          f"{losses_after}; best-scoring detections' IoU with their class's ground truth "
          f"{iou_before:.3f} -> {iou_after:.3f}")
    assert history.history["nonfinite_steps"] == [0.0]
    for term in FALLING_TERMS:
        assert losses_after[term] < losses_before[term], (term, losses_before, losses_after)
    assert iou_after > iou_before
