"""One SGD step through `oanet_tf.modeling.guarded_update` under MirroredStrategy over two
logical CPU devices, once with finite gradients on both replicas and once with a NaN on the
second replica only; print, as JSON, what each replica decided and the weights, optimizer
iterations and non-trainable state after each step.

Run as a subprocess: logical devices must be configured before TensorFlow starts.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"  # see distributed_losses.py
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from oanet_tf.modeling.guarded_update import (all_replicas_finite, apply_if,  # noqa: E402
                                             restore_unless)

LEARNING_RATE = 0.5
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    weight = keras.Variable([1.0, 2.0], name="weight")
    state = keras.Variable([0.0, 0.0], trainable=False, name="state")
    optimizer = keras.optimizers.SGD(learning_rate=LEARNING_RATE)
    optimizer.build([weight])


@tf.function
def step(gradients, new_state):
    """gradients: [2, 2], row r for replica r; new_state: [2], written on every replica."""
    def replica_fn():
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        gradient = tf.gather(gradients, replica)
        saved = [tf.identity(state.value)]
        state.assign(new_state)  # what a forward pass writes (batch norm)
        finite = all_replicas_finite([gradient, None])
        apply_if(optimizer, finite, [gradient], [weight])
        restore_unless(finite, [state], saved)
        return finite

    return strategy.experimental_local_results(strategy.run(replica_fn))


report = {"replicas": strategy.num_replicas_in_sync, "learning_rate": LEARNING_RATE}
cases = {"finite": ([[0.25, -1.0], [0.75, 3.0]], [5.0, 6.0]),
         "nan_on_one_replica": ([[0.25, -1.0], [float("nan"), 3.0]], [7.0, 8.0])}
for name, (gradients, new_state) in cases.items():
    decided = step(tf.constant(gradients), tf.constant(new_state))
    report[name] = {"decided": [bool(d) for d in decided],
                    "weight": [v.numpy().tolist() for v in weight.value.values],
                    "state": [v.numpy().tolist() for v in state.value.values],
                    "iterations": int(optimizer.iterations.numpy())}
print(json.dumps(report))
