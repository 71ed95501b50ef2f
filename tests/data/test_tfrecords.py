"""TFRecords: a record parses back to exactly what `PanopticDataset.load_example` decodes, the
pipeline gives the same batches from records as from COCO files (also when sharded and when
resumed mid-stream), and bad manifests or shards raise errors naming the file."""

import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from oanet_tf.__main__ import USER_ERROR
from oanet_tf.__main__ import main as oanet_tf_main
from oanet_tf.cli import convert_tfrecords
from oanet_tf.config import DataConfig, SplitConfig
from oanet_tf.data import pipeline
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.data.pipeline import build_dataset
from oanet_tf.data.panoptic_format import read_id_png
from oanet_tf.data.source import EXAMPLE_SPEC, PANOPTIC_SPEC
from oanet_tf.data.splits import open_split, synthetic_split
from oanet_tf.data.tfrecords import (IMAGES_FILE, JPEG, MANIFEST_FILE, PNG, TFRecordSource,
                                     image_payload, parse_example, parse_image_size,
                                     serialize_example, write_tfrecords)
from oanet_tf.errors import DatasetError
from tests.data.scenes import (CATEGORIES, HEIGHT, MIXED_IMAGES, WIDTH, _config, _convert,
                               _mixed_split, _scene_image,
                               _scene_instances, _three_image_split, _write_dataset)


def _assert_same_example(parsed: dict, reference: dict):
    """Same keys, dtypes, shapes and values as EXAMPLE_SPEC (with PANOPTIC_SPEC when
    `reference` has the segment ids) says and `reference` holds."""
    spec = EXAMPLE_SPEC + ((PANOPTIC_SPEC,) if "panoptic" in reference else ())
    assert set(parsed) == {name for name, _, _ in spec} == set(reference)
    for name, dtype, _ in spec:
        value = parsed[name].numpy()
        assert parsed[name].dtype == dtype, name
        assert value.dtype == reference[name].dtype, name
        np.testing.assert_array_equal(value, reference[name], err_msg=name)
        assert value.shape == reference[name].shape, name


def _round_trip(example, image_file=""):
    return parse_example(tf.constant(serialize_example(example, image_file)),
                         with_panoptic=True)


def _assert_same_batches(first, second):
    first, second = list(first), list(second)
    assert len(first) == len(second) > 0
    for a, b in zip(first, second):
        assert set(a) == set(b)
        for key in a:
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy(), err_msg=key)


def _image_ids(batches):
    return [i for batch in batches for i in batch["image_id"].numpy().tolist()]


# ------------------------------------------------------------------------------ format

def test_round_trip_of_png_images_and_overlapping_masks(tmp_path):
    split = _write_dataset(str(tmp_path), [_scene_image(1), _scene_image(2)],
                           _scene_instances(1) + _scene_instances(2))
    data = PanopticDataset.from_split(split)
    for index in range(len(data)):
        example = data.load_example(index, with_panoptic=True)
        assert example["masks"].sum(axis=0).max() == 2  # the tie lies inside the person
        _assert_same_example(_round_trip(example, data.records[index].image_file), example)


def test_jpeg_files_are_stored_as_they_are(synthetic_dir):
    data = PanopticDataset.from_split(synthetic_split(synthetic_dir, "train"))
    for index in range(3):
        example = data.load_example(index, with_panoptic=True)
        path = data.records[index].image_file
        payload, image_format = image_payload(example["image"], path)
        with open(path, "rb") as f:
            assert image_format == JPEG and payload == f.read()
        _assert_same_example(_round_trip(example, path), example)


def test_real_coco_jpegs_round_trip(coco_sample_dir):
    data = PanopticDataset(os.path.join(coco_sample_dir, "images"),
                           os.path.join(coco_sample_dir, "panoptic.json"),
                           os.path.join(coco_sample_dir, "panoptic"),
                           os.path.join(coco_sample_dir, "instances_from_panoptic.json"))
    for index in range(len(data)):
        example = data.load_example(index, with_panoptic=True)
        path = data.records[index].image_file
        assert image_payload(example["image"], path)[1] == JPEG  # decodes exactly as PIL
        _assert_same_example(_round_trip(example, path), example)


def test_exif_rotated_jpeg_is_stored_as_png(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(np.random.default_rng(0).integers(
        0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8), k=1)))
    split = _write_dataset(str(tmp_path), [_scene_image(pixels=stored, ext="jpg", exif=exif)])
    data = PanopticDataset.from_split(split)
    example = data.load_example(0, with_panoptic=True)
    assert image_payload(example["image"], data.records[0].image_file)[1] == PNG
    _assert_same_example(_round_trip(example, data.records[0].image_file), example)


def _hand_made_example(num_instances, height=7, width=5, label_max=200, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        "boxes": rng.uniform(0, 5, (num_instances, 4)).astype(np.float32),
        "classes": rng.integers(1, 90, num_instances).astype(np.int32),
        "masks": rng.integers(0, 2, (num_instances, height, width)).astype(np.uint8),
        "semantic": rng.integers(0, label_max + 1, (height, width)).astype(np.int32),
        "owner": rng.integers(0, 256, (height, width)).astype(np.int32),
        "image_id": np.int64(2 ** 40 + 3),
        "original_size": np.array([height, width], np.int32),
        # Segment ids up to the largest the RGB encoding holds: every channel is used.
        "panoptic": rng.integers(0, 256 ** 3, (height, width)).astype(np.int32),
    }


@pytest.mark.parametrize("num_instances", [0, 1, 8, 19])
@pytest.mark.parametrize("label_max", [255, 300, 65535])
def test_bit_packed_masks_and_wide_labels(num_instances, label_max):
    # 19 overlapping random masks fill two bytes of bits and part of a third; labels above
    # 255 need 16-bit PNGs.
    example = _hand_made_example(num_instances, label_max=label_max)
    example["semantic"][0, 0] = label_max
    example["panoptic"][0, 0] = 256 ** 3 - 1  # the largest COCO segment id
    _assert_same_example(_round_trip(example), example)


def test_labels_beyond_16_bits_are_refused():
    example = _hand_made_example(1)
    example["owner"][0, 0] = 70000
    with pytest.raises(ValueError, match="outside"):
        serialize_example(example)


# ------------------------------------------------------------------------------ writer

def test_shards_manifest_and_order(five_images):
    data, records = five_images
    assert len(records) == 5 and records.counts == [2, 3]
    assert [os.path.basename(f) for f in records.files] == [
        "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    assert records.categories == data.categories
    assert records.report_bad_images() == 0
    records.verify()
    parsed = [parse_example(r) for r in tf.data.TFRecordDataset(records.files)]
    assert len(parsed) == 5
    for index, example in enumerate(parsed):  # file order is the split's order
        _assert_same_example(example, data.load_example(index))
    assert not [f for f in os.listdir(records.directory) if f.startswith(".tmp-")]


def test_bad_images_are_left_out_and_listed(tmp_path, caplog):
    split = _three_image_split(str(tmp_path / "coco"))
    _, records = _convert(split, tmp_path / "records", 1, skip_bad_images=True)
    assert len(records) == 1
    assert _image_ids(build_dataset(records, _config(), False, 2)) == [1]
    assert [os.path.basename(file) for file, _ in records.skipped] == ["000002.png",
                                                                      "000003.png"]
    with caplog.at_level(logging.WARNING, logger="oanet_tf"):
        assert records.report_bad_images() == 2
    assert "left out when converting" in caplog.text and "000003.png" in caplog.text


def test_a_bad_image_stops_the_conversion_and_leaves_no_manifest(tmp_path, five_images):
    _, records = five_images
    data = PanopticDataset.from_split(_write_dataset(str(tmp_path / "bad"), [
        _scene_image(1), _scene_image(3)]))
    with open(data.records[1].image_file, "wb") as f:
        f.write(b"garbage")  # found when decoding
    with pytest.raises(DatasetError, match="000003.png"):
        write_tfrecords(data, records.directory, 2, progress=False)
    # The old manifest is gone (its shards may be half replaced); no temporary file is left.
    assert sorted(os.listdir(records.directory)) == [os.path.basename(f) for f in records.files]
    with pytest.raises(DatasetError, match=MANIFEST_FILE):
        TFRecordSource.from_dir(records.directory)


# ------------------------------------------------------------------------------ reader errors

def _manifest(records):
    with open(os.path.join(records.directory, MANIFEST_FILE)) as f:
        return json.load(f)


def _raises_naming(path, fn, *words):
    with pytest.raises(DatasetError) as info:
        fn()
    assert path in str(info.value), str(info.value)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_missing_or_malformed_manifest(five_images):
    _, records = five_images
    path = os.path.join(records.directory, MANIFEST_FILE)
    manifest = _manifest(records)
    open_dir = lambda: TFRecordSource.from_dir(records.directory)  # noqa: E731
    with open(path, "w") as f:
        f.write("{not json")
    _raises_naming(path, open_dir, "not valid JSON")
    for change, words in (({"version": 99}, ("version 99",)),
                          ({"format": "other"}, ("not a manifest",)),
                          ({"count": 4}, ("not the sum",)),
                          ({"shards": [{"file": "x"}]}, ("needs 'file'",))):
        with open(path, "w") as f:
            json.dump({**manifest, **change}, f)
        _raises_naming(path, open_dir, *words)
    os.remove(path)
    _raises_naming(path, open_dir, "not found")


def test_missing_truncated_or_corrupt_shard(five_images):
    _, records = five_images
    shard = records.files[1]
    with open(shard, "rb") as f:
        data = bytearray(f.read())
    data[len(data) // 2] ^= 0xFF  # same size, bad checksum
    with open(shard, "wb") as f:
        f.write(data)
    corrupt = TFRecordSource.from_dir(records.directory)
    _raises_naming(shard, corrupt.verify, "unreadable")
    with open(shard, "wb") as f:
        f.write(data[:-10])
    _raises_naming(shard, lambda: TFRecordSource.from_dir(records.directory), "truncated")
    os.remove(shard)
    _raises_naming(shard, lambda: TFRecordSource.from_dir(records.directory), "not found")


# ------------------------------------------------------------------------------ pipeline

def test_same_batches_from_records_and_files(synthetic_dir, tmp_path):
    split = synthetic_split(synthetic_dir, "train")
    data, records = _convert(split, tmp_path / "three", 3)
    config = DataConfig(short_side=96, max_side=128, scale_jitter=(0.7, 1.3), max_instances=3,
                        shuffle_buffer=1, num_parallel_calls=2)
    assert max(len(data.load_example(i)["classes"]) for i in range(len(data))) > 3  # truncated
    _assert_same_batches(build_dataset(data, config, False, 4),
                         build_dataset(records, config, False, 4))
    # Training: 8 batches of 4 = almost 3 epochs of 12 images, shuffled, jittered, flipped;
    # with one image per shard the shard files' permutation is the images' permutation.
    _, single = _convert(split, tmp_path / "single", len(data))
    _assert_same_batches(build_dataset(data, config, True, 4, seed=7).take(8),
                         build_dataset(single, config, True, 4, seed=7).take(8))


def test_val_from_records_evaluates_the_same_examples_as_from_files(synthetic_dir, tmp_path):
    """The val split converted and named in data.val.tfrecord_dir: `open_split` reads the
    records, whose evaluation batches (ground truth at the original size included) and image
    records (files, segments_info) are those of the COCO files."""
    files = PanopticDataset.from_split(synthetic_split(synthetic_dir, "val"))
    write_tfrecords(files, str(tmp_path / "val"), 2, progress=False, split="val", workers=2)
    config = DataConfig(val=SplitConfig(tfrecord_dir=str(tmp_path / "val")),
                        synthetic_dir=str(tmp_path / "no_synthetic_data"))
    records = open_split(config, "val", skip_bad_images=False)
    assert isinstance(records, TFRecordSource) and len(records) == len(files) == 6
    data_config = DataConfig(short_side=96, max_side=128, max_instances=2, num_parallel_calls=2)
    from_files = list(build_dataset(files, data_config, False, 4, ground_truth=True))
    _assert_same_batches(from_files,
                         build_dataset(records, data_config, False, 4, ground_truth=True))
    ids = _image_ids(from_files)
    assert ids == [r.image_id for r in files.records]
    height, width = from_files[0]["original_size"].numpy()[0]
    np.testing.assert_array_equal(from_files[0]["original_panoptic"].numpy()[0, :height, :width],
                                  read_id_png(files.records[0].png_file, "panoptic"))
    for image_id in ids:
        assert records.record(image_id) == files.record(image_id)
    with pytest.raises(KeyError, match=IMAGES_FILE):
        records.record(10 ** 9)


def test_missing_image_list_is_named_when_evaluating(five_images):
    _, records = five_images
    path = os.path.join(records.directory, IMAGES_FILE)
    os.remove(path)
    source = TFRecordSource.from_dir(records.directory)  # training needs no image list
    _raises_naming(path, lambda: source.record(1), "not found")


def test_sharding_reads_every_image_once(tmp_path):
    split = _write_dataset(str(tmp_path / "coco"), [_scene_image(i) for i in range(1, 6)])
    data, records = _convert(split, tmp_path / "records", 3)
    for source in (data, records):
        seen = []
        for pipeline_id in range(2):
            context = tf.distribute.InputContext(num_input_pipelines=2,
                                                 input_pipeline_id=pipeline_id,
                                                 num_replicas_in_sync=2)
            seen.append(_image_ids(build_dataset(source, _config(), False, 4,
                                                 input_context=context)))
        assert sorted(seen[0] + seen[1]) == [1, 2, 3, 4, 5]
        assert seen[0] and seen[1]
    # TFRecords are shared out by file: shards 0 and 2 (images 1, 4, 5) and shard 1 (2, 3).
    assert seen == [[1, 4, 5], [2, 3]]


def test_too_few_shards_for_the_pipelines(five_images):
    _, records = five_images
    context = tf.distribute.InputContext(num_input_pipelines=3, input_pipeline_id=0,
                                         num_replicas_in_sync=3)
    with pytest.raises(DatasetError, match="2 TFRecord shard.* 3 input pipelines.*"
                                           "--num-shards 3"):
        build_dataset(records, _config(), True, 3, input_context=context)


def test_same_grouped_batches_from_records_and_files(tmp_path):
    # The group key comes from the JSON's sizes for files and from the records' for records
    # (one image per shard, so that both read one order).
    data, records = _convert(_mixed_split(str(tmp_path / "coco")), tmp_path / "records",
                             len(MIXED_IMAGES))
    for buckets in ((), ((32, 32), (32, 64), (64, 32))):
        config = _config(scale_jitter=(0.7, 1.3), horizontal_flip=True, buckets=buckets,
                         shuffle_buffer=1)
        _assert_same_batches(build_dataset(data, config, True, 3, seed=2).take(12),
                             build_dataset(records, config, True, 3, seed=2).take(12))


def _training_epochs(records, epochs: int, **kwargs) -> list:
    """Image ids of the first `epochs` epochs of a training stream of `records` in batches of
    one, without a record buffer (the scene's images share one orientation: grouping keeps
    the stream's order)."""
    ds = build_dataset(records, _config(shuffle_buffer=1), True, 1, **kwargs)
    ids = [int(b["image_id"][0]) for b in ds.take(epochs * len(records))]
    return [ids[e * len(records):(e + 1) * len(records)] for e in range(epochs)]


def test_records_are_shuffled_by_shard_file_each_epoch(tmp_path):
    # 12 images in 6 shards of 2, no record buffer: an epoch reads the shards in a new
    # order, TFRECORD_CYCLE_LENGTH at a time, one record from each in turn.
    count, shards = 12, 6
    split = _write_dataset(str(tmp_path / "coco"), [_scene_image(i) for i in range(1, 13)])
    _, records = _convert(split, tmp_path / "records", shards)
    shard_of = {image_id: (image_id - 1) // (count // shards) for image_id in range(1, 13)}
    epochs = _training_epochs(records, 3, seed=5)
    for epoch, ids in enumerate(epochs):
        assert sorted(ids) == list(range(1, 13))
        file_order = [int(k) for k in pipeline.epoch_order(shards, 5, epoch)]
        # Interleaved from all six files (fewer than the cycle): the first records of each
        # file in the permuted order, then their second records.
        assert [shard_of[i] for i in ids] == file_order * 2
        assert ids[:shards] == [1 + 2 * k for k in file_order]
    assert len({tuple(ids) for ids in epochs}) == 3
    assert _training_epochs(records, 3, seed=5) == epochs


def test_sharded_records_stay_disjoint_each_epoch(five_images):
    _, records = five_images  # shards of 2 and 3 images
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2,
                                             input_pipeline_id=pipeline_id,
                                             num_replicas_in_sync=2)
        ds = build_dataset(records, _config(shuffle_buffer=4), True, 2, seed=1,
                           input_context=context)
        length = records.counts[pipeline_id]
        ids = [int(b["image_id"][0]) for b in ds.take(3 * length)]
        seen.append([sorted(ids[e * length:(e + 1) * length]) for e in range(3)])
    assert seen == [[[1, 2]] * 3, [[3, 4, 5]] * 3]


def test_parse_image_size(mixed_images):
    data, records = mixed_images
    sizes = [parse_image_size(record).numpy().tolist()
             for record in tf.data.TFRecordDataset(records.files)]
    assert sizes == [list(data.load_example(i)["original_size"]) for i in range(len(data))]


# Resuming on MIXED_IMAGES (epochs of 8) in batches of 3 with chunks of 2 batches (6 images):
# k = 1 inside the first chunk, 3 and 5 inside chunks that straddle an epoch's end, 8 at a
# chunk starting an epoch.
RESUME_CHUNK_BATCHES = 2
RESUME_AT = (1, 3, 5, 8)


@pytest.mark.parametrize("buckets", [(), ((32, 32), (32, 64), (64, 32), (64, 64))])
@pytest.mark.parametrize("source_kind", ["files", "records"])
def test_resume_continues_exactly(mixed_images, source_kind, buckets, monkeypatch):
    monkeypatch.setattr(pipeline, "GROUP_BATCHES", RESUME_CHUNK_BATCHES)
    data, records = mixed_images
    source = data if source_kind == "files" else records
    config = _config(scale_jitter=(0.6, 1.4), horizontal_flip=True, shuffle_buffer=3,
                     buckets=buckets)
    total = max(RESUME_AT) + 2
    fresh = list(build_dataset(source, config, True, 3, seed=11).take(total))
    for k in RESUME_AT:
        resumed = build_dataset(source, config, True, 3, seed=11, start_batch=k)
        _assert_same_batches(fresh[k:], resumed.take(total - k))


def test_resume_across_pipelines_and_in_evaluation(mixed_images, monkeypatch):
    monkeypatch.setattr(pipeline, "GROUP_BATCHES", RESUME_CHUNK_BATCHES)
    data, records = mixed_images
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                         num_replicas_in_sync=2)
    config = _config(scale_jitter=(0.6, 1.4), horizontal_flip=True)
    for source in (data, records):
        # Global batch 4: 2 per replica; pipeline 1 reads 4 (files) or 3 (records) images.
        fresh = list(build_dataset(source, config, True, 4, seed=3,
                                   input_context=context).take(9))
        for k in (3, 5):
            _assert_same_batches(fresh[k:], build_dataset(source, config, True, 4, seed=3,
                                                          input_context=context,
                                                          start_batch=k).take(9 - k))
        evaluation = list(build_dataset(source, _config(), False, 2))
        for k in (1, 2, 3):
            _assert_same_batches(evaluation[k:], build_dataset(source, _config(), False, 2,
                                                               start_batch=k))


# ------------------------------------------------------------------------------ CLI

CONVERT = ["convert-tfrecords"]  # the command, as `python -m oanet_tf` takes it


def test_converter_cli_with_a_config(tmp_path, capsys):
    split = _three_image_split(str(tmp_path / "coco"))
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"data": {"skip_bad_images": True, "val": {
        "image_dir": split.image_dir, "panoptic_json": split.panoptic_json,
        "panoptic_dir": split.panoptic_dir}}}))  # JSON is YAML
    out = str(tmp_path / "records")
    assert oanet_tf_main(CONVERT + ["--config", str(config), "--split", "val", "--out", out,
                                    "--num-shards", "1", "--no-progress"]) == 0
    assert "1 images (2 skipped) in 1 shards" in capsys.readouterr().out
    records = TFRecordSource.from_dir(out)
    assert records.split == "val" and len(records) == 1
    assert records.categories.semantic_ids == sorted(c["id"] for c in CATEGORIES)


def test_converter_cli_with_paths_and_errors(tmp_path, capsys):
    split = _three_image_split(str(tmp_path / "coco"))
    paths = ["--image-dir", split.image_dir, "--panoptic-json", split.panoptic_json,
             "--panoptic-dir", split.panoptic_dir, "--out", str(tmp_path / "records"),
             "--no-progress"]
    stopped = convert_tfrecords.FAILED  # a bad input stops the conversion
    assert oanet_tf_main(CONVERT + paths + ["--num-shards", "1"]) == stopped  # bad image
    assert "000002.png" in capsys.readouterr().err  # its PNG is missing
    assert oanet_tf_main(CONVERT + paths + ["--num-shards", "5", "--skip-bad-images"]) == stopped
    assert "num_shards must lie in 1..2" in capsys.readouterr().err
    both = oanet_tf_main(CONVERT + paths + ["--num-shards", "1", "--config", "x.yaml"])
    assert both == USER_ERROR
    assert "either --config or explicit paths" in capsys.readouterr().err
