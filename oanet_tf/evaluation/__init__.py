"""Evaluation: Panoptic Quality exactly as the COCO panoptic API computes it.

`pq` is plain numpy (importing this package never loads TensorFlow); the in-graph Keras
metric lives in `oanet_tf.evaluation.pq_metric` and is imported only by those who need it.
"""

from oanet_tf.evaluation.pq import (PQAccumulator, evaluate_files, format_per_class_table,
                                    format_pq_table)

__all__ = ["PQAccumulator", "evaluate_files", "format_per_class_table", "format_pq_table"]
