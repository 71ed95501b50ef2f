"""Where a split's files are: the config's paths, its TFRecords, or the synthetic dataset;
and opening a split as an input-pipeline source.

Nothing here writes. The synthetic dataset is made by an explicit step (`python -m oanet_tf
make-synthetic`, or the demo, with `synthetic_arguments`); a config that reads it before
then is refused with the command that makes it.
"""

from __future__ import annotations

import dataclasses
import os
import shlex

from oanet_tf.config import DataConfig, SplitConfig
from oanet_tf.errors import DatasetError

SPLITS = ("train", "val")
# The SplitConfig fields that name files of the synthetic dataset.
SYNTHETIC_PATHS = ("image_dir", "panoptic_json", "panoptic_dir", "instances_json")


def synthetic_split(root: str, split: str) -> SplitConfig:
    """The layout written by `make_synthetic_dataset` for one split."""
    base = os.path.join(root, split)
    return SplitConfig(image_dir=os.path.join(base, "images"),
                       panoptic_json=os.path.join(base, "panoptic.json"),
                       panoptic_dir=os.path.join(base, "panoptic"),
                       instances_json=os.path.join(base, "instances.json"))


def synthetic_arguments(data_config: DataConfig) -> dict:
    """The arguments of `synthetic.make_synthetic_dataset` that write the synthetic dataset
    the config reads (data.synthetic_*)."""
    return {"out_dir": data_config.synthetic_dir, "num_train": data_config.synthetic_train,
            "num_val": data_config.synthetic_val, "seed": data_config.synthetic_seed,
            "size": tuple(data_config.synthetic_size)}


def make_synthetic_command(data_config: DataConfig) -> str:
    """The command line that writes the synthetic dataset the config reads."""
    arguments = synthetic_arguments(data_config)
    height, width = arguments["size"]
    return (f"python -m oanet_tf make-synthetic --out {shlex.quote(arguments['out_dir'])} "
            f"--train {arguments['num_train']} --val {arguments['num_val']} "
            f"--seed {arguments['seed']} --size {height}x{width}")


def missing_synthetic_splits(data_config: DataConfig) -> tuple:
    """The splits that read the synthetic dataset (no files or TFRecords configured) and
    lack one of its files."""
    return tuple(split for split in SPLITS if _reads_synthetic(data_config, split) and not all(
        os.path.exists(getattr(synthetic_split(data_config.synthetic_dir, split), key))
        for key in SYNTHETIC_PATHS))


def _reads_synthetic(data_config: DataConfig, split: str) -> bool:
    configured = getattr(data_config, split)
    return not (configured.panoptic_json or configured.tfrecord_dir)


def resolve_split(data_config: DataConfig, split: str) -> SplitConfig:
    """The COCO files of `split`: the configured ones, else the synthetic dataset's, which
    must have been made (DatasetError naming its folder and the command otherwise)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; one of {SPLITS}")
    configured = getattr(data_config, split)
    if configured.panoptic_json:
        return dataclasses.replace(configured)
    paths = synthetic_split(data_config.synthetic_dir, split)
    missing = [getattr(paths, key) for key in SYNTHETIC_PATHS
               if not os.path.exists(getattr(paths, key))]
    if missing:
        raise DatasetError(
            f"data.{split} names no files, so the synthetic dataset in "
            f"{data_config.synthetic_dir} is read, but it is not made ({missing[0]} is "
            f"missing): make it with {make_synthetic_command(data_config)}")
    return paths


def open_split(data_config: DataConfig, split: str, skip_bad_images: bool):
    """The `source.Source` the input pipeline reads for `split`: a `TFRecordSource` when
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
