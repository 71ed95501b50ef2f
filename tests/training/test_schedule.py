"""The paper's learning-rate schedule and optimizer settings."""

import numpy as np
import pytest

from oanet_tf.config import load_config
from oanet_tf.training.schedule import WarmupStepDecay, build_optimizer


def test_paper_schedule_values():
    schedule = WarmupStepDecay(0.02, 0.002, 2000, (60000, 80000), 0.1)
    expected = {0: 0.002, 1000: 0.011, 2000: 0.02, 59999: 0.02, 60000: 0.002,
                79999: 0.002, 80000: 0.0002, 99999: 0.0002}
    for step, rate in expected.items():
        assert float(schedule(step)) == pytest.approx(rate, rel=1e-5), step
    clone = WarmupStepDecay(**schedule.get_config())
    assert [float(clone(s)) for s in expected] == [float(schedule(s)) for s in expected]


def test_learning_rate_scales_with_global_batch():
    config = load_config("configs/coco_r50.yaml")
    optimizer = build_optimizer(config.train, global_batch_size=8)
    rate = optimizer.learning_rate  # at step 0: warm-up start, halved for half the batch
    assert float(np.asarray(rate)) == pytest.approx(0.001, rel=1e-5)
    assert optimizer.momentum == pytest.approx(0.9)
    assert optimizer.l2 == pytest.approx(1e-4)
