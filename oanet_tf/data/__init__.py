"""Data: the COCO panoptic format, dataset reading and validation, the tf.data pipeline.

Import the modules themselves (`oanet_tf.data.coco_panoptic`, `oanet_tf.data.pipeline`):
this package imports nothing, so the numpy-only modules never load TensorFlow.
"""
