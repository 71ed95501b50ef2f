"""The paper's learning-rate schedule (linear warm-up, then step decay, section 4.2) and the
optimizer it drives."""

from __future__ import annotations

import keras
import tensorflow as tf

from oanet_tf.config import TrainConfig
from oanet_tf.training.optimizer import SGDWithL2


@keras.saving.register_keras_serializable(package="oanet_tf")
class WarmupStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear from `warmup_start` to `base` over `warmup_steps`, then times `decay_factor`
    at each boundary in `decay_steps` (0.002 -> 0.02, then 0.002 at 60k, 0.0002 at 80k)."""

    def __init__(self, base: float, warmup_start: float, warmup_steps: int, decay_steps,
                 decay_factor: float = 0.1):
        self.base = float(base)
        self.warmup_start = float(warmup_start)
        self.warmup_steps = int(warmup_steps)
        self.decay_steps = tuple(int(s) for s in decay_steps)
        self.decay_factor = float(decay_factor)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        decays = sum(tf.cast(step >= boundary, tf.float32) for boundary in self.decay_steps)
        rate = self.base * tf.pow(self.decay_factor, decays)
        if self.warmup_steps > 0:
            progress = tf.minimum(step / float(self.warmup_steps), 1.0)
            warm = self.warmup_start + (self.base - self.warmup_start) * progress
            rate = tf.where(step < self.warmup_steps, warm, rate)
        return rate

    def get_config(self):
        return {"base": self.base, "warmup_start": self.warmup_start,
                "warmup_steps": self.warmup_steps, "decay_steps": list(self.decay_steps),
                "decay_factor": self.decay_factor}


def build_optimizer(train_config: TrainConfig, global_batch_size: int | None = None):
    """SGD with momentum and L2 weight decay in the gradient (`SGDWithL2`, as the paper and
    Detectron2); learning rates scale linearly with the batch."""
    t = train_config
    scale = (global_batch_size or t.batch_size) / float(t.reference_batch_size)
    schedule = WarmupStepDecay(t.base_learning_rate * scale, t.warmup_start_learning_rate * scale,
                               t.warmup_steps, t.decay_steps, t.decay_factor)
    optimizer = SGDWithL2(learning_rate=schedule, momentum=t.momentum, l2=t.weight_decay)
    if t.mixed_precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
