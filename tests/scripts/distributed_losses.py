"""Train the tiny OANet for a few steps on one device and under MirroredStrategy over two
logical CPU devices (same global batch, same initial weights); print both loss histories.

Run as a subprocess: logical devices must be configured before TensorFlow starts.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# oneDNN CPU kernels crash (double free) when two replicas run them concurrently.
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from tests.tiny_model import (CATEGORIES, DISTRIBUTED_STEPS as STEPS, EVERYTHING_SAMPLED,  # noqa: E402
                        tiny_batch, tiny_config)

from oanet_tf.modeling.builder import build_oanet  # noqa: E402
from oanet_tf.training.schedule import build_optimizer  # noqa: E402



def run(strategy, weights):
    config = tiny_config(*EVERYTHING_SAMPLED)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = build_oanet(config.model, config.train, CATEGORIES)
        if weights is not None:
            model.set_weights(weights)
        model.compile(optimizer=build_optimizer(config.train, 2), jit_compile=False)
    initial = model.get_weights()
    # Both images are the same scene: per-replica batch-norm statistics equal the global ones.
    data = tf.data.Dataset.from_tensors(tiny_batch(2)).repeat()
    history = model.fit(data, epochs=STEPS, steps_per_epoch=1, verbose=0, shuffle=False)
    return history.history, initial


one_history, weights = run(tf.distribute.OneDeviceStrategy("/cpu:0"), None)
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
mirrored_history, _ = run(mirrored, weights)
print(json.dumps({"replicas": mirrored.num_replicas_in_sync, "one_device": one_history,
                  "mirrored": mirrored_history}))
