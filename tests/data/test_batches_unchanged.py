"""The batches of a small synthetic split are those the pipeline gave before its two sources
were put behind one interface (`source.Source`) and `build_dataset` and `write_tfrecords`
were cut into named steps: seeded order, scale jitter and flips, grouping by bucket or
orientation, sharding per input pipeline and exact resume, from COCO files and from
TFRecords. The fingerprints were recorded with the code of commit 0db36e8 (`fingerprint` of
the same cases, run against that tree; its whole batches, images included, were identical
too). A change meant to alter the batches (or the synthetic data) records them anew."""

import hashlib

import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.config import DataConfig
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.data.pipeline import build_dataset
from oanet_tf.data.splits import synthetic_split
from oanet_tf.data.tfrecords import TFRecordSource, write_tfrecords

# Batch keys computed from integers only (nearest-neighbour gathers, sizes from a seeded
# float64 jitter): the same on every machine, unlike the bilinear-resized images.
EXACT_KEYS = ("image_id", "original_size", "image_size", "gt_count", "gt_classes", "gt_masks",
              "semantic", "owner")
BOX_DECIMALS = 3
SETTINGS = dict(short_side=96, max_side=160, scale_jitter=(0.6, 1.4), horizontal_flip=True,
                max_instances=4, shuffle_buffer=4, num_parallel_calls=2)
BUCKETS = ((64, 96), (96, 128), (128, 160))
PIPELINE_1_OF_2 = dict(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2)
# name: (DataConfig overrides, build_dataset arguments, input context, batches taken)
CASES = {
    "training_buckets": ({"buckets": BUCKETS}, dict(training=True, batch_size=3, seed=3),
                         None, 10),
    "resumed_pipeline_1": ({}, dict(training=True, batch_size=4, seed=5, start_batch=3),
                           PIPELINE_1_OF_2, 6),
    "evaluation": ({}, dict(training=False, batch_size=5), None, None),
}
# (source, case) -> (image ids of each batch, sha256 of EXACT_KEYS and rounded gt_boxes),
# from commit 0db36e8.
RECORDED = {
    ("files", "training_buckets"): (
        [[10, 5, 1], [1, 10, 9], [12, 2, 11], [4, 7, 2], [1, 8, 5], [2, 9, 6], [10, 12, 8],
         [4, 3, 7], [4, 10, 6], [5, 8, 3]],
        "27b50f46a633df81fc3ffc0205fdc6d5eaa6e291024c31727e676df0e9d9dd71"),
    ("files", "resumed_pipeline_1"): (
        [[6, 12], [8, 2], [10, 4], [12, 8], [2, 6], [4, 10]],
        "977b2f0ca656326aa5627ce04ecfe2482293b34f8942be2c93920abef97ef309"),
    ("files", "evaluation"): (
        [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12]],
        "01550877b92f52dae581239e860bc0ce0c9e904fa0baa3fafa7eb6e3dc0ac3be"),
    ("records", "training_buckets"): (
        [[11, 6, 5], [2, 5, 9], [3, 11, 7], [5, 7, 6], [4, 12, 8], [1, 9, 10], [3, 11, 8],
         [12, 3, 5], [8, 4, 7], [6, 1, 4]],
        "f196934a008c4541c6283d184a2ce2ab77c26510f01022e67e676648545a00bc"),
    ("records", "resumed_pipeline_1"): (
        [[5, 6], [5, 8], [6, 7], [8, 5], [6, 7], [5, 8]],
        "0146190f563a4fd1fe1b473ae008330282a58bf8c52b98f25b1e214095ddfb9e"),
    ("records", "evaluation"): (
        [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12]],
        "01550877b92f52dae581239e860bc0ce0c9e904fa0baa3fafa7eb6e3dc0ac3be"),
}


def fingerprint(batches) -> tuple:
    """(image ids per batch, digest of every batch's EXACT_KEYS and gt_boxes)."""
    digest, ids = hashlib.sha256(), []
    for batch in batches:
        ids.append(batch["image_id"].numpy().tolist())
        for key in EXACT_KEYS:
            value = np.ascontiguousarray(batch[key].numpy())
            digest.update(f"{key}{value.shape}{value.dtype}".encode())
            digest.update(value.tobytes())
        digest.update(np.round(batch["gt_boxes"].numpy(), BOX_DECIMALS).tobytes())
    return ids, digest.hexdigest()


def case_fingerprint(source, case: str) -> tuple:
    overrides, arguments, context, take = CASES[case]
    context = tf.distribute.InputContext(**context) if context else None
    ds = build_dataset(source, DataConfig(**{**SETTINGS, **overrides}), input_context=context,
                       **arguments)
    return fingerprint(ds.take(take) if take else ds)


def sources(synthetic_dir: str, records_dir: str) -> dict:
    """The synthetic train split (12 images) as COCO files and as TFRecords in 3 shards."""
    files = PanopticDataset.from_split(synthetic_split(synthetic_dir, "train"))
    write_tfrecords(files, records_dir, 3, progress=False, workers=2)
    return {"files": files, "records": TFRecordSource.from_dir(records_dir)}


@pytest.fixture(scope="module")
def both_sources(synthetic_dir, tmp_path_factory):
    return sources(synthetic_dir, str(tmp_path_factory.mktemp("records")))


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("source", ["files", "records"])
def test_batches_are_those_recorded_before(both_sources, source, case):
    assert case_fingerprint(both_sources[source], case) == RECORDED[source, case]
