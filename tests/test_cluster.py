"""oanet_tf.cluster: the chief and each worker's index, read from a strategy's cluster
resolver."""

import pytest
import tensorflow as tf

from oanet_tf.cluster import is_chief, worker_index


class _Cluster:
    """A strategy as far as is_chief and worker_index look: its cluster resolver."""

    def __init__(self, jobs, task_type, task_id):
        self.cluster_resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(jobs), task_type=task_type, task_id=task_id)


TWO_WORKERS = {"worker": ["a:1", "b:1"]}
CHIEF_AND_TWO_WORKERS = {"chief": ["c:1"], "worker": ["a:1", "b:1"]}


@pytest.mark.parametrize("strategy, chief, index", [
    (None, True, None),  # no strategy
    (tf.distribute.get_strategy(), True, None),  # the default strategy: no resolver
    (_Cluster(TWO_WORKERS, None, None), True, None),  # a resolver outside any cluster task
    (_Cluster({"worker": ["a:1"]}, "worker", 0), True, None),  # a cluster of one
    (_Cluster(TWO_WORKERS, "worker", 0), True, 0),  # no chief: worker 0 is
    (_Cluster(TWO_WORKERS, "worker", 1), False, 1),
    (_Cluster(CHIEF_AND_TWO_WORKERS, "chief", 0), True, 0),  # the chief first ...
    (_Cluster(CHIEF_AND_TWO_WORKERS, "worker", 0), False, 1),  # ... then the workers
    (_Cluster(CHIEF_AND_TWO_WORKERS, "worker", 1), False, 2),
], ids=["none", "default", "no_task", "one_worker", "worker0", "worker1", "chief",
        "chief_worker0", "chief_worker1"])
def test_chief_and_worker_index(strategy, chief, index):
    assert is_chief(strategy) is chief
    assert worker_index(strategy) == index
