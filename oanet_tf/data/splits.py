"""Where a split's files are: the config's paths, its TFRecords, or the synthetic dataset
(made on demand); and opening a split as an input-pipeline source."""

from __future__ import annotations

import dataclasses
import os

from oanet_tf.config import DataConfig, SplitConfig

SPLITS = ("train", "val")


def synthetic_split(root: str, split: str) -> SplitConfig:
    """The layout written by `make_synthetic_dataset` for one split."""
    base = os.path.join(root, split)
    return SplitConfig(image_dir=os.path.join(base, "images"),
                       panoptic_json=os.path.join(base, "panoptic.json"),
                       panoptic_dir=os.path.join(base, "panoptic"),
                       instances_json=os.path.join(base, "instances.json"))


def resolve_split(data_config: DataConfig, split: str, generate: bool = True) -> SplitConfig:
    """The files of `split`; with no paths configured, the synthetic dataset (generated if
    missing and `generate` is true)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; one of {SPLITS}")
    configured = getattr(data_config, split)
    if configured.panoptic_json:
        return dataclasses.replace(configured)
    paths = synthetic_split(data_config.synthetic_dir, split)
    if generate and not all(os.path.exists(p) for p in (
            paths.image_dir, paths.panoptic_json, paths.panoptic_dir, paths.instances_json)):
        from oanet_tf.data.synthetic import make_synthetic_dataset

        make_synthetic_dataset(data_config.synthetic_dir, data_config.synthetic_train,
                               data_config.synthetic_val, data_config.synthetic_seed,
                               tuple(data_config.synthetic_size), progress=True)
    return paths


def open_split(data_config: DataConfig, split: str, skip_bad_images: bool):
    """The source the input pipeline reads for `split`: a `TFRecordSource` when
    `data.<split>.tfrecord_dir` is set, else a `PanopticDataset` of `resolve_split`'s files.
    (Imported here: resolving paths alone never loads TensorFlow.)"""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; one of {SPLITS}")
    tfrecord_dir = getattr(data_config, split).tfrecord_dir
    if tfrecord_dir:
        from oanet_tf.data.tfrecords import TFRecordSource

        return TFRecordSource.from_dir(tfrecord_dir)
    from oanet_tf.data.coco_panoptic import PanopticDataset

    return PanopticDataset.from_split(resolve_split(data_config, split),
                                      skip_bad_images=skip_bad_images)
