"""Where this process stands in a multi-worker tf.distribute cluster, read from a strategy's
cluster resolver: the chief (who writes files) and each worker's index.

The train step (`modeling.train_step`) and the trainer both ask, so it sits below both.
"""

from __future__ import annotations

import tensorflow as tf


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
