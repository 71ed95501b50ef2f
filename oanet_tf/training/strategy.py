"""tf.distribute strategies by name: auto, one_device, mirrored, multi_worker.

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


def is_chief(strategy: tf.distribute.Strategy | None) -> bool:
    """False only for a non-chief worker of a multi-worker cluster (chief, or worker 0 when the
    cluster has no chief)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if "chief" in resolver.cluster_spec().as_dict():
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and int(resolver.task_id or 0) == 0


def worker_index(strategy: tf.distribute.Strategy) -> int | None:
    """This process's index among the workers of a multi-worker cluster (the chief first),
    or None in a single-process run."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return None
    spec = resolver.cluster_spec().as_dict()
    if sum(len(spec.get(job, [])) for job in ("chief", "worker")) <= 1:
        return None
    has_chief = "chief" in spec
    if resolver.task_type == "chief":
        return 0
    return int(resolver.task_id or 0) + (1 if has_chief else 0)
