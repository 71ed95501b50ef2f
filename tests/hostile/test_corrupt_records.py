"""Issue 27, item 7: a corrupt record inside a TFRecord shard (same size, so the manifest's
byte count cannot tell) stops the input pipeline with an error naming the shard, where
TensorFlow's own error says only "corrupted record at 12"; the command line prints it as one
line, exit code 2."""

import struct

import pytest
import tensorflow as tf

from oanet_tf import __main__ as cli
from oanet_tf.data import pipeline
from oanet_tf.data.pipeline import build_dataset
from oanet_tf.errors import DatasetError
from tests.data.scenes import _config, _convert
from tests.hostile.conftest import write_scene

LENGTH_BYTES, CRC_BYTES = 8, 4  # a record: length, its CRC, the data, the data's CRC


def _record_spans(data: bytes) -> list:
    """(start, end) of each record's data in the bytes of a TFRecord file."""
    spans, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset:offset + LENGTH_BYTES])
        start = offset + LENGTH_BYTES + CRC_BYTES
        spans.append((start, start + length))
        offset = start + length + CRC_BYTES
    return spans


@pytest.fixture
def corrupt_shard(tmp_path):
    """Four images in two shards of two; a byte in the middle of the second shard's second
    record flipped. Returns (the TFRecordSource, the corrupt shard's path)."""
    _, records = _convert(write_scene(tmp_path / "coco"), tmp_path / "records", 2)
    shard = records.files[1]
    with open(shard, "rb") as f:
        data = bytearray(f.read())
    start, end = _record_spans(bytes(data))[1]
    data[(start + end) // 2] ^= 0xFF
    with open(shard, "wb") as f:
        f.write(data)
    return records, shard


def test_reading_in_order_names_the_shard(corrupt_shard):
    records, shard = corrupt_shard
    data = build_dataset(records, _config(), training=False, batch_size=1, repeat=False)
    with pytest.raises(DatasetError) as info:
        for _ in pipeline.batches(data):
            pass
    assert str(info.value).startswith(f"{shard}: unreadable after record 1 of 2")


def test_training_order_names_the_shard_and_the_cli_prints_it(corrupt_shard):
    """Shuffled shards read in turn (interleaved), as fit reads them."""
    records, shard = corrupt_shard
    data = build_dataset(records, _config(), training=True, batch_size=1, repeat=False,
                         seed=3)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        for _ in data:
            pass
    code, message = cli.describe_error(info.value)
    assert code == 2 and message.startswith(f"{shard}: unreadable after record 1 of 2")


def test_whole_shards_are_read_in_full(tmp_path):
    _, records = _convert(write_scene(tmp_path / "coco"), tmp_path / "records", 2)
    data = build_dataset(records, _config(), training=False, batch_size=1, repeat=False)
    ids = [int(batch["image_id"][0]) for batch in pipeline.batches(data)]
    assert ids == [1, 2, 3, 4]
