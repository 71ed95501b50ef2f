"""tf.distribute strategies by name: auto, one_device, mirrored, multi_worker."""

from __future__ import annotations

import os
import warnings

import tensorflow as tf

from oanet_tf.errors import ConfigError

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """auto: MirroredStrategy over all GPUs when there are several, else one device."""
    if name not in STRATEGIES:
        raise ConfigError(f"--strategy {name!r}: one of {', '.join(STRATEGIES)}")
    gpus = tf.config.list_logical_devices("GPU")
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        if not gpus and os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0":
            warnings.warn("MirroredStrategy over CPU devices: oneDNN kernels can crash when "
                          "replicas run them concurrently; set TF_ENABLE_ONEDNN_OPTS=0 before "
                          "starting Python")
        return tf.distribute.MirroredStrategy()
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
