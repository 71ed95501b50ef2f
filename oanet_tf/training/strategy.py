"""tf.distribute strategies by name: auto, one_device, mirrored, multi_worker. Where a
process stands in a cluster is `oanet_tf.cluster`'s.

TensorFlow is imported when a strategy is made: `train --help` reads STRATEGIES without it.
"""

from __future__ import annotations

import os
import typing
import warnings

from oanet_tf.errors import ConfigError

if typing.TYPE_CHECKING:
    import tensorflow as tf

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """auto: MirroredStrategy over all GPUs when there are several, else one device."""
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ConfigError(f"--strategy {name!r}: one of {', '.join(STRATEGIES)}")
    if name == "multi_worker":
        # Created before anything that starts TensorFlow's runtime (listing devices does).
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        _warn_about_onednn(tf.config.list_logical_devices("GPU"), "MultiWorkerMirroredStrategy")
        return strategy
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        _warn_about_onednn(gpus, "MirroredStrategy")
        return tf.distribute.MirroredStrategy()
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def _warn_about_onednn(gpus, strategy_name: str):
    """Replicas (or a replica and the collectives) running oneDNN CPU kernels concurrently
    crash with a double free (measured with TF 2.21); GPUs are unaffected."""
    if not gpus and os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0":
        warnings.warn(f"{strategy_name} on CPU: oneDNN kernels can crash (double free) when "
                      f"replicas run them concurrently; set TF_ENABLE_ONEDNN_OPTS=0 before "
                      f"starting Python")
