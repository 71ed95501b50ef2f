"""The trainer end to end: a fixed-seed run of the synthetic config lowers the losses and
detects objects (it learns).

Thresholds come from measured runs on two machines (below), with margins on both sides.
"""

import os

import pytest

from oanet_tf.config import load_config
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.errors import ConfigError
from oanet_tf.data.splits import resolve_split
from oanet_tf.inference.evaluate import evaluate_detections
from oanet_tf.training.trainer import train

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "synthetic.yaml")
EPOCHS, STEPS = 5, 50
# Measured on this config and seed, recall and mask IoU after 250 steps / after 120 steps:
# an Intel CPU with AVX-512 and AMX 0.73, 0.69 / 0.19, 0.60; an AMD EPYC with AVX2 only
# 0.48, 0.63 / 0.20, 0.64 (the same code, other kernels: the trajectory differs). The recall
# bound sits between the under-trained runs and the trained ones on both machines.
MIN_RECALL = 0.35
MIN_MASK_IOU = 0.55
# The box term is normalised by all sampled RoIs (Detectron2): it grows while the RPN learns
# to propose positives, so it is not expected to fall in a short run.
FALLING_TERMS = ("rpn_cls", "rpn_box", "cls", "mask", "seg", "srm")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("learning")
    config = load_config(CONFIG, [
        f"data.synthetic_dir={root / 'data'}", "data.synthetic_train=160",
        "data.synthetic_val=24", f"train.epochs={EPOCHS}", f"train.steps_per_epoch={STEPS}",
        "train.warmup_steps=20", "train.decay_steps=[1000]", "train.seed=0",
        "eval.max_images=4", f"train.eval_every_epochs={EPOCHS}"])
    run = train(config, str(root / "model"), "one_device", verbose=0)
    return config, run


def test_every_loss_term_falls(trained):
    _, run = trained
    history = run.history.history
    for term in FALLING_TERMS:
        values = history[f"{term}_loss"]
        assert values[-1] < values[0], (term, values)
    assert history["loss"][-1] < 0.8 * history["loss"][0]


def test_val_detections(trained):
    config, run = trained
    val = PanopticDataset.from_split(resolve_split(config.data, "val"))
    quality = evaluate_detections(run.model, val, config.data, config.train.batch_size)
    print("learning run:", run.history.history, quality)
    assert quality["recall"] >= MIN_RECALL, quality
    assert quality["mask_iou"] >= MIN_MASK_IOU, quality


def test_a_coco_config_with_no_backbone_start_refuses_before_writing(tmp_path):
    config = load_config(os.path.join(os.path.dirname(CONFIG), "coco_r50.yaml"))
    with pytest.raises(ConfigError, match=r"model\.backbone_weights is empty"):
        train(config, str(tmp_path / "model"), "one_device", verbose=0)
    assert not os.path.exists(tmp_path / "model")
