"""The train step (oanet_tf.modeling.train_step): the step log's means and skip count, and train
steps in mixed precision through the Keras 3 API (bfloat16 compute with float32 variables on
CPU; float16 through the Keras loss-scale optimizer)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.modeling.builder import build_oanet
from oanet_tf.modeling.train_step import StepLog
from oanet_tf.training.schedule import build_optimizer
from tests.tiny_model import CATEGORIES, tiny_batch, tiny_config

STEPS = 3


def test_step_log_averages_finite_steps_and_counts_skipped_ones():
    log = StepLog(("a", "b"))
    log.update({"a": tf.constant(1.0), "b": tf.constant(4.0)}, tf.constant(5.0),
               tf.constant(True))
    log.update({"a": tf.constant(np.nan), "b": tf.constant(2.0)}, tf.constant(np.nan),
               tf.constant(False))
    logs = log.update({"a": tf.constant(3.0), "b": tf.constant(0.0)}, tf.constant(3.0),
                      tf.constant(True))
    assert {k: float(v) for k, v in logs.items()} == {
        "a_loss": 2.0, "b_loss": 2.0, "loss": 4.0, "nonfinite_steps": 1.0}
    assert [m.name for m in log.metrics] == ["a_loss", "b_loss", "total_loss",
                                             "nonfinite_steps"]


@pytest.fixture
def policy():
    """Set a global dtype policy for one test and restore float32 afterwards."""
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_trains_in_mixed_precision(policy, precision):
    config = tiny_config(f"train.mixed_precision={precision}", "train.warmup_steps=0")
    policy(config.train.mixed_precision)
    keras.utils.set_random_seed(0)
    net = build_oanet(config.model, config.train, CATEGORIES)
    optimizer = build_optimizer(config.train, 2)
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer) == (
        precision == "mixed_float16")
    net.compile(optimizer=optimizer, jit_compile=False)
    compute = "bfloat16" if precision == "mixed_bfloat16" else "float16"
    # Variables stay float32; the convolutions compute in the low precision.
    assert all(v.dtype == "float32" for v in net.trainable_variables)
    outputs = net(tiny_batch(2)["images"], training=False)
    assert outputs["semantic_logits"].dtype == compute
    assert outputs["features"][0].dtype == compute
    # The layers that decide proposals and detections stay float32 (config.DECISION_LAYER_DTYPE).
    assert outputs["rpn_logits"].dtype == outputs["rpn_deltas"].dtype == "float32"
    box_head = net.roi_heads.box_head
    assert box_head.cls.compute_dtype == box_head.box.compute_dtype == "float32"
    assert box_head.fcs[0].compute_dtype == compute

    data = tf.data.Dataset.from_tensors(tiny_batch(2)).repeat()
    history = net.fit(data, epochs=STEPS, steps_per_epoch=1, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert all(np.isfinite(losses)), losses
    assert losses[-1] < losses[0]
    assert history.history["nonfinite_steps"] == [0.0] * STEPS
    # A loss-scale optimizer skips a step whose scaled gradients overflow (whether the first
    # one does depends on the initial weights) and halves its scale each time.
    overflowed = 0 if precision == "mixed_bfloat16" else round(math.log2(
        net.optimizer.initial_scale / float(net.optimizer.dynamic_scale.numpy())))
    assert overflowed < STEPS
    assert int(net.optimizer.iterations.numpy()) + overflowed == STEPS
    detections = net.detect(tiny_batch(2)["images"])
    assert detections["scores"].dtype == tf.float32
    assert np.isfinite(detections["ranking_map"].numpy()).all()
