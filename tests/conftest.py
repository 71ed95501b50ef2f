"""Shared fixtures: the real COCO sample (when present) and a small synthetic dataset."""

from __future__ import annotations

import os

import pytest

SAMPLE_ENV = "OANET_COCO_SAMPLE"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def coco_sample_dir():
    """../shared/coco/sample (two real COCO val images), found through $OANET_COCO_SAMPLE."""
    path = os.environ.get(SAMPLE_ENV, "")
    if not path:
        pytest.skip(f"${SAMPLE_ENV} is not set: it points at the two real COCO images "
                    f"(shared/coco/sample); .ci/run sets it")
    if not os.path.isfile(os.path.join(path, "panoptic.json")):
        pytest.skip(f"${SAMPLE_ENV}={path} has no panoptic.json: the real COCO sample is absent "
                    f"(a fresh clone has no ../shared)")
    return path


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
    """A small synthetic COCO panoptic dataset (train 12, val 6 images of 96x128)."""
    from oanet_tf.data.synthetic import make_synthetic_dataset

    out = str(tmp_path_factory.mktemp("synthetic"))
    make_synthetic_dataset(out, num_train=12, num_val=6, seed=0, size=(96, 128))
    return out
