"""Train the tiny OANet for a few steps, either as one worker of a MultiWorkerMirroredStrategy
cluster on 127.0.0.1 or alone on one device with the same global batch; write the loss
history as JSON.

    multi_worker_losses.py worker INDEX PORT0,PORT1 OUT.json
    multi_worker_losses.py one_device OUT.json

Run as subprocesses: TF_CONFIG must be set before TensorFlow starts.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"  # see distributed_losses.py
if sys.argv[1] == "worker":
    ports = sys.argv[3].split(",")
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
        "task": {"type": "worker", "index": int(sys.argv[2])}})
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from tests.tiny_model import (CATEGORIES, DISTRIBUTED_STEPS, EVERYTHING_SAMPLED,  # noqa: E402
                        tiny_batch, tiny_config)

from oanet_tf.modeling.builder import build_oanet  # noqa: E402
from oanet_tf.training.schedule import build_optimizer  # noqa: E402

GLOBAL_BATCH = 2

if sys.argv[1] == "worker":
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
else:
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
config = tiny_config(*EVERYTHING_SAMPLED)
with strategy.scope():
    keras.utils.set_random_seed(0)  # the same initial weights in every process
    model = build_oanet(config.model, config.train, CATEGORIES)
    model.compile(optimizer=build_optimizer(config.train, GLOBAL_BATCH), jit_compile=False)
# Every image is the same scene, so per-replica batch-norm statistics equal the global ones;
# each worker reads its half of the global batch.
per_worker = GLOBAL_BATCH // strategy.num_replicas_in_sync
data = strategy.distribute_datasets_from_function(
    lambda context: tf.data.Dataset.from_tensors(tiny_batch(per_worker)).repeat())
history = model.fit(data, epochs=DISTRIBUTED_STEPS, steps_per_epoch=1, verbose=0, shuffle=False)
with open(sys.argv[-1], "w") as f:
    json.dump({"replicas": strategy.num_replicas_in_sync, "history": history.history,
               "checksum": float(sum(abs(w).sum() for w in model.get_weights()))}, f)
