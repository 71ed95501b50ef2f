"""Evaluation metrics in numpy: Panoptic Quality exactly as the COCO panoptic API computes it,
overlap ownership accuracy, detection quality.

Importing this package never loads TensorFlow. Running a model over a split to
feed these metrics is `oanet_tf.inference.split_scoring`'s.
"""

from oanet_tf.evaluation.pq import (PQAccumulator, evaluate_files, format_per_class_table,
                                    format_pq_table)

__all__ = ["PQAccumulator", "evaluate_files", "format_per_class_table", "format_pq_table"]
