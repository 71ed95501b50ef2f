"""Inference: the in-graph panoptic merge and the COCO panoptic writer."""
