"""Where a split's files are: the config's paths, or the synthetic dataset (made on demand)."""

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
    if generate and not all(os.path.exists(p) for p in dataclasses.astuple(paths)):
        from oanet_tf.data.synthetic import make_synthetic_dataset

        make_synthetic_dataset(data_config.synthetic_dir, data_config.synthetic_train,
                               data_config.synthetic_val, data_config.synthetic_seed,
                               tuple(data_config.synthetic_size), progress=True)
    return paths
