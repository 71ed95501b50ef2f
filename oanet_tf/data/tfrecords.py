"""Sharded TFRecords of a decoded COCO panoptic split: the format, the writer and the reader.

Converting once moves the numpy decoding (PIL, pycocotools, segment bookkeeping) out of
training. A record holds one image with its labels already resolved, compactly: the image
file's own JPEG/PNG bytes when TensorFlow decodes them to exactly PIL's pixels (else a PNG of
the pixels), semantic and owner labels as one 2-channel PNG, the instance masks bit-packed
8 to a byte in one PNG, boxes and classes as lists, and what evaluation scores against: the
panoptic PNG's segment ids (as an RGB PNG, decoded only for evaluation). `parse_example` turns
a record back into exactly the arrays `PanopticDataset.load_example` returns, in TensorFlow
ops only, so tf.data decodes records in parallel without the GIL.

Shards hold consecutive images in the split's order (read in file order they give the
split's order) and are listed with their counts, byte sizes and the categories in
`manifest.json`; `images.json` holds each converted image's files and segments_info (read
only when evaluating). So a reader needs neither the COCO JSON nor a pass over the records.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import logging
import os

import numpy as np
import tensorflow as tf

from oanet_tf.data.coco_panoptic import MAX_LISTED, ImageRecord, PanopticDataset
from oanet_tf.data.panoptic_format import ID_BASE, CategoryMap, id_to_rgb
from oanet_tf.data.source import EXAMPLE_SPEC, PANOPTIC_SPEC
from oanet_tf.errors import DatasetError
from oanet_tf.fileio import atomic_path, read_json, write_json

logger = logging.getLogger(__name__)

FORMAT = "oanet_tf.panoptic_tfrecord"
FORMAT_VERSION = 2  # 2: records hold the panoptic segment ids, images.json their segments
MANIFEST_FILE = "manifest.json"
IMAGES_FILE = "images.json"
SHARD_SUFFIX = ".tfrecord"
JPEG, PNG = "jpeg", "png"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAGIC = {JPEG: b"\xff\xd8\xff", PNG: PNG_SIGNATURE}
JPEG_DCT_METHOD = "INTEGER_ACCURATE"  # libjpeg's default IDCT, the one PIL uses
LABEL_DEPTH_8, LABEL_DEPTH_16 = 8, 16  # bits per channel of the labels PNG
BITS_PER_BYTE = 8
PNG_MAX_ROWS = 1_000_000  # libpng's default limit on an image's height
READ_BUFFER_BYTES = 8 << 20
IN_FLIGHT_PER_WORKER = 4  # examples decoded ahead of the writer, per worker thread
# Shard files read at once in training, one record from each in turn: neighbouring records
# come from different shards. Each open file buffers READ_BUFFER_BYTES.
TFRECORD_CYCLE_LENGTH = 8
# Graph-level seed of the per-epoch record buffer: with it fixed, the order depends on the
# pipeline's seed and the epoch only, not on the process's global seed.
SHUFFLE_GRAPH_SEED = 1

_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/format": tf.io.FixedLenFeature([], tf.string),
    "image/id": tf.io.FixedLenFeature([], tf.int64),
    "image/size": tf.io.FixedLenFeature([2], tf.int64),
    "labels/encoded": tf.io.FixedLenFeature([], tf.string),
    "labels/depth": tf.io.FixedLenFeature([], tf.int64),
    "masks/encoded": tf.io.FixedLenFeature([], tf.string),
    "boxes": tf.io.VarLenFeature(tf.float32),
    "classes": tf.io.VarLenFeature(tf.int64),
}
_PANOPTIC_FEATURE = {"panoptic/encoded": tf.io.FixedLenFeature([], tf.string)}


def shard_name(split: str, shard: int, num_shards: int) -> str:
    return f"{split}-{shard:05d}-of-{num_shards:05d}{SHARD_SUFFIX}"


# ---------------------------------------------------------------------------- format

def _decode_image(data, image_format):
    """[h, w, 3] uint8 of JPEG or PNG bytes, decoded as `parse_example` decodes them."""
    if image_format == JPEG:
        return tf.io.decode_jpeg(data, channels=3, dct_method=JPEG_DCT_METHOD)
    return tf.io.decode_png(data, channels=3)


def image_payload(image: np.ndarray, path: str = "") -> tuple:
    """(bytes, format) storing `image` [h, w, 3] uint8 losslessly: the file at `path` as it
    is when TensorFlow decodes it to exactly `image` (no EXIF rotation, same colour
    conversion), else a PNG of `image`."""
    if path:
        with open(path, "rb") as f:
            data = f.read()
        for image_format, magic in _MAGIC.items():
            if data.startswith(magic):
                try:
                    decoded = _decode_image(data, image_format).numpy()
                except tf.errors.OpError:
                    break
                if decoded.shape == image.shape and np.array_equal(decoded, image):
                    return data, image_format
                break
    return tf.io.encode_png(image).numpy(), PNG


def _bytes_feature(value: bytes):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def serialize_example(example: dict, image_file: str = "") -> bytes:
    """One record of a decoded example (the dict `PanopticDataset.load_example(i,
    with_panoptic=True)` returns); `image_file` is the image's file, stored as it is when
    that is lossless."""
    height, width = (int(v) for v in example["original_size"])
    image_bytes, image_format = image_payload(example["image"], image_file)
    labels = np.stack([example["semantic"], example["owner"]], axis=-1)
    if labels.min(initial=0) < 0 or labels.max(initial=0) > np.iinfo(np.uint16).max:
        raise ValueError(f"image {int(example['image_id'])}: semantic/owner labels outside "
                         f"0..{np.iinfo(np.uint16).max}")
    depth = LABEL_DEPTH_8 if labels.max(initial=0) <= np.iinfo(np.uint8).max else LABEL_DEPTH_16
    labels = labels.astype(np.uint8 if depth == LABEL_DEPTH_8 else np.uint16)
    masks = example["masks"]
    # Mask k is bit k % 8 of plane k // 8; an image without instances stores one empty plane.
    planes = (np.packbits(masks.astype(bool), axis=0, bitorder="little") if len(masks)
              else np.zeros((1, height, width), np.uint8))
    if planes.shape[0] * height > PNG_MAX_ROWS:
        raise ValueError(f"image {int(example['image_id'])}: {len(masks)} instances of "
                         f"{height} rows exceed what one PNG holds ({PNG_MAX_ROWS} rows)")
    feature = {
        "image/encoded": _bytes_feature(image_bytes),
        "image/format": _bytes_feature(image_format.encode()),
        "image/id": _int_feature([int(example["image_id"])]),
        "image/size": _int_feature([height, width]),
        "labels/encoded": _bytes_feature(tf.io.encode_png(labels).numpy()),
        "labels/depth": _int_feature([depth]),
        "masks/encoded": _bytes_feature(
            tf.io.encode_png(planes.reshape(-1, width, 1)).numpy()),
        "boxes": tf.train.Feature(float_list=tf.train.FloatList(
            value=example["boxes"].reshape(-1).tolist())),
        "classes": _int_feature(example["classes"].tolist()),
        "panoptic/encoded": _bytes_feature(
            tf.io.encode_png(id_to_rgb(example["panoptic"])).numpy()),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse_example(serialized, with_panoptic: bool = False) -> dict:
    """A record -> the decoded example, TensorFlow ops only: image uint8 [h, w, 3], boxes
    float32 [n, 4], classes int32 [n], masks uint8 [n, h, w], semantic / owner int32 [h, w],
    image_id int64 [], original_size int32 [2] (see EXAMPLE_SPEC); with `with_panoptic` also
    panoptic int32 [h, w], the segment ids (PANOPTIC_SPEC)."""
    features = tf.io.parse_single_example(
        serialized, {**_FEATURES, **(_PANOPTIC_FEATURE if with_panoptic else {})})
    size = tf.cast(features["image/size"], tf.int32)
    height, width = size[0], size[1]
    encoded = features["image/encoded"]
    image = tf.cond(tf.equal(features["image/format"], JPEG),
                    lambda: _decode_image(encoded, JPEG), lambda: _decode_image(encoded, PNG))
    labels_png = features["labels/encoded"]
    # A 2-channel PNG (grey + alpha) decodes with channels=0, "as stored".
    labels = tf.cond(
        tf.equal(features["labels/depth"], LABEL_DEPTH_16),
        lambda: tf.cast(tf.io.decode_png(labels_png, channels=0, dtype=tf.uint16), tf.int32),
        lambda: tf.cast(tf.io.decode_png(labels_png, channels=0), tf.int32))
    classes = tf.cast(tf.sparse.to_dense(features["classes"]), tf.int32)
    planes = tf.reshape(tf.io.decode_png(features["masks/encoded"], channels=1),
                        [-1, 1, height, width])
    shifts = tf.constant(np.arange(BITS_PER_BYTE, dtype=np.uint8)[None, :, None, None])
    bits = tf.bitwise.bitwise_and(tf.bitwise.right_shift(planes, shifts), 1)
    masks = tf.reshape(bits, [-1, height, width])[:tf.shape(classes)[0]]
    example = {
        "image": image,
        "boxes": tf.reshape(tf.sparse.to_dense(features["boxes"]), [-1, 4]),
        "classes": classes,
        "masks": masks,
        "semantic": labels[..., 0],
        "owner": labels[..., 1],
        "image_id": features["image/id"],
        "original_size": size,
    }
    spec = EXAMPLE_SPEC
    if with_panoptic:
        rgb = tf.cast(tf.io.decode_png(features["panoptic/encoded"], channels=3), tf.int32)
        example["panoptic"] = rgb[..., 0] + ID_BASE * rgb[..., 1] + ID_BASE ** 2 * rgb[..., 2]
        spec += (PANOPTIC_SPEC,)
    return {name: tf.ensure_shape(example[name], shape) for name, _, shape in spec}


def parse_image_size(serialized):
    """A record -> int32 [2] (height, width) of its image, without decoding anything."""
    size = tf.io.parse_single_example(serialized, {"image/size": _FEATURES["image/size"]})
    return tf.cast(size["image/size"], tf.int32)


# ---------------------------------------------------------------------------- writer

def _ordered_map(function, items, workers: int):
    """function(item) for every item on `workers` threads, yielded in the items' order with
    a bounded number decoded ahead."""
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending = collections.deque()
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) >= workers * IN_FLIGHT_PER_WORKER:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def write_tfrecords(dataset: PanopticDataset, out_dir: str, num_shards: int,
                    progress: bool = True, split: str = "train",
                    workers: int | None = None) -> dict:
    """Convert `dataset` into `num_shards` shards `{split}-NNNNN-of-MMMMM.tfrecord` of
    consecutive images, `images.json` and `manifest.json` in `out_dir`; returns the manifest.

    Images are decoded on `workers` threads (default: every core). A bad image stops the
    conversion with its DatasetError, or is left out and listed in the manifest when the
    dataset skips bad images. Every file is written to a temporary name and renamed; the
    old manifest and image list are removed first and the new manifest written last, so a
    reader never pairs a manifest with half-replaced files.
    """
    if not 1 <= num_shards <= len(dataset):
        raise ValueError(f"num_shards must lie in 1..{len(dataset)} (the number of images), "
                         f"got {num_shards}")
    os.makedirs(out_dir, exist_ok=True)
    manifest_path = os.path.join(out_dir, MANIFEST_FILE)
    for old in (manifest_path, os.path.join(out_dir, IMAGES_FILE)):
        with contextlib.suppress(FileNotFoundError):
            os.remove(old)
    records = _ordered_map(_record_encoder(dataset), range(len(dataset)),
                           workers or os.cpu_count() or 1)
    with contextlib.closing(records):
        shards, written = _write_shards(records, len(dataset), out_dir, split, num_shards,
                                        progress)
    if not written:
        raise DatasetError(f"{dataset.panoptic_json}: no image could be converted "
                           f"({len(dataset.bad_images)} bad)")
    write_json(os.path.join(out_dir, IMAGES_FILE),
               {"images": [_image_entry(dataset.records[index]) for index in written]})
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "split": split,
        "count": len(written),
        "shards": shards,
        "categories": list(dataset.categories.categories),
        "skipped": [{"file": file, "reason": reason} for file, reason in dataset.bad_images],
        "source": {"panoptic_json": dataset.panoptic_json,
                   "instances_json": dataset.instances_json},
    }
    write_json(manifest_path, manifest, indent=1)
    return manifest


def _record_encoder(dataset: PanopticDataset):
    """index -> the record of image `index` (its ground truth included), or None for a bad
    image the dataset skips."""

    def encode(index):
        example = dataset.load_or_skip(index, with_panoptic=True)
        if example is None:
            return None
        image_file = dataset.records[index].image_file
        try:
            return serialize_example(example, image_file)
        except ValueError as err:
            raise DatasetError(f"{image_file}: cannot store it in a record ({err})") from None

    return encode


def _write_shards(records, count: int, out_dir: str, split: str, num_shards: int,
                  progress: bool) -> tuple:
    """Write the `count` images' records (None: left out) into `num_shards` shards of
    consecutive images -> (the manifest's shard entries, the indices written)."""
    from tqdm import tqdm

    shards, written = [], []
    with tqdm(total=count, unit="image", disable=not progress,
              desc=f"converting {split}") as bar:
        for shard in range(num_shards):
            name = shard_name(split, shard, num_shards)
            path = os.path.join(out_dir, name)
            before = len(written)
            with atomic_path(path) as tmp, tf.io.TFRecordWriter(tmp) as writer:
                for index in range(shard * count // num_shards,
                                   (shard + 1) * count // num_shards):
                    record = next(records)
                    if record is not None:
                        writer.write(record)
                        written.append(index)
                    bar.update(1)
            shards.append({"file": name, "count": len(written) - before,
                           "bytes": os.path.getsize(path)})
    return shards, written


def _image_entry(record: ImageRecord) -> dict:
    """An image's entry in images.json: what evaluation needs besides the pixels."""
    return {"id": record.image_id, "image_file": record.image_file,
            "png_file": record.png_file, "png_name": record.png_name,
            "segments_info": list(record.segments),
            "size": list(record.size) if record.size is not None else None}


# ---------------------------------------------------------------------------- reader

def read_shard(path, count) -> tf.data.Dataset:
    """The records of the shard file `path` (string []), which holds `count` (int64 []).

    A corrupt or truncated record, or a read error, ends the stream with a failed check that
    names the shard: TensorFlow's own error ("corrupted record at 12") names no file. The
    reader stops at a bad record (it moves on to its next file, and has no other), so the
    records read fall short of `count`, which the end of the stream checks."""
    records = tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER_BYTES).ignore_errors()
    marked = records.map(lambda record: (record, False)).concatenate(
        tf.data.Dataset.from_tensors((tf.constant("", tf.string), True)))

    def check(read, item):
        record, end = item
        complete = tf.debugging.Assert(tf.logical_not(end) | tf.equal(read, count), [
            tf.strings.join([path, ": unreadable after record ", tf.strings.as_string(read),
                             " of ", tf.strings.as_string(count), " (a corrupt or truncated "
                             "record, or a read error): convert the split again"])],
            name="check_shard")
        with tf.control_dependencies([complete]):
            return read + 1, (tf.identity(record), end)

    return marked.scan(tf.constant(0, tf.int64), check).filter(
        lambda record, end: tf.logical_not(end)).map(lambda record, end: record)


class TFRecordSource:
    """A converted split: its shard files, image count and categories, read from
    `manifest.json`. As a `source.Source` its members are the shard files, its items the
    records."""

    skip_bad_images = False  # bad images were left out when converting

    def __init__(self, directory: str, manifest: dict):
        self.directory = directory
        self.manifest_path = os.path.join(directory, MANIFEST_FILE)
        self._check_manifest(manifest)
        self.split = manifest["split"]
        self.files = [os.path.join(directory, s["file"]) for s in manifest["shards"]]
        self.counts = [s["count"] for s in manifest["shards"]]
        self.skipped = [(s["file"], s["reason"]) for s in manifest.get("skipped", [])]
        self._records = None  # image id -> ImageRecord, read from images.json on first use
        try:
            self.categories = CategoryMap.from_categories(manifest["categories"])
        except (ValueError, TypeError, KeyError) as err:
            raise DatasetError(f"{self.manifest_path}: bad categories ({err})") from None
        for path, shard in zip(self.files, manifest["shards"]):
            if not os.path.isfile(path):
                raise DatasetError(f"TFRecord shard not found: {path} (listed in "
                                   f"{self.manifest_path})")
            size = os.path.getsize(path)
            if size != shard["bytes"]:
                raise DatasetError(f"{path}: {size} bytes, but {self.manifest_path} says "
                                   f"{shard['bytes']} (truncated or overwritten; convert "
                                   f"again)")

    @classmethod
    def from_dir(cls, directory: str) -> "TFRecordSource":
        path = os.path.join(directory, MANIFEST_FILE)
        try:
            manifest = read_json(path, "TFRecord manifest")
        except FileNotFoundError as err:
            raise DatasetError(f"{err} (written last by `python -m oanet_tf convert-tfrecords`: "
                               f"is the conversion complete?)") from None
        except ValueError as err:
            raise DatasetError(str(err)) from None
        return cls(directory, manifest)

    def _check_manifest(self, manifest):
        where = self.manifest_path
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise DatasetError(f"{where}: not a manifest of {FORMAT}")
        if manifest.get("version") != FORMAT_VERSION:
            raise DatasetError(f"{where}: format version {manifest.get('version')!r}, this "
                               f"reader reads version {FORMAT_VERSION}")
        shards = manifest.get("shards")
        if not isinstance(shards, list) or not shards:
            raise DatasetError(f"{where}: no 'shards' list")
        for shard in shards:
            if (not isinstance(shard, dict) or not isinstance(shard.get("file"), str)
                    or not all(isinstance(shard.get(k), int) and shard[k] >= 0
                               for k in ("count", "bytes"))):
                raise DatasetError(f"{where}: shard entry {str(shard)[:80]} needs 'file', "
                                   f"'count' and 'bytes'")
        if not isinstance(manifest.get("split"), str):
            raise DatasetError(f"{where}: no 'split'")
        skipped = manifest.get("skipped", [])
        if not isinstance(skipped, list) or not all(
                isinstance(s, dict) and {"file", "reason"} <= set(s) for s in skipped):
            raise DatasetError(f"{where}: 'skipped' must list {{'file', 'reason'}} entries")
        if manifest.get("count") != sum(s["count"] for s in shards):
            raise DatasetError(f"{where}: 'count' {manifest.get('count')!r} is not the sum of "
                               f"the shard counts ({sum(s['count'] for s in shards)})")

    def __len__(self) -> int:
        return sum(self.counts)

    def pipeline_share(self, num_pipelines: int, pipeline_id: int) -> tuple:
        """(files string [n], image count) read by input pipeline `pipeline_id` of
        `num_pipelines`: every num_pipelines-th shard file."""
        if len(self.files) < num_pipelines:
            raise DatasetError(f"{self.directory}: {len(self.files)} TFRecord shard(s) for "
                               f"{num_pipelines} input pipelines, which read whole files: "
                               f"convert with --num-shards {num_pipelines} or more")
        return (tf.constant(self.files[pipeline_id::num_pipelines]),
                sum(self.counts[pipeline_id::num_pipelines]))

    def reader(self):
        """shard file string [] (one of `files`) -> its records (`read_shard`, with the count
        the manifest lists for it)."""
        files = tf.constant(self.files)
        counts = tf.constant(self.counts, tf.int64)

        def read(path):
            return read_shard(path, tf.reduce_sum(tf.where(tf.equal(files, path), counts, 0)))

        return read

    def epoch_items(self, files: tf.data.Dataset, shuffle_key,
                    shuffle_buffer: int) -> tf.data.Dataset:
        """The records of `files`. Not shuffled: file after file, each in order. Shuffled:
        TFRECORD_CYCLE_LENGTH files at a time, one record from each in turn, mixed in a
        buffer of `shuffle_buffer` records (if > 1) seeded by `shuffle_key`."""
        read = self.reader()
        if shuffle_key is None:
            return files.flat_map(read)
        records = files.interleave(read, cycle_length=TFRECORD_CYCLE_LENGTH, block_length=1)
        if shuffle_buffer <= 1:
            return records
        tf.random.set_seed(SHUFFLE_GRAPH_SEED)  # inside the calling function's graph only
        buffer_seed = tf.random.stateless_uniform([], shuffle_key, minval=None, maxval=None,
                                                  dtype=tf.int64)
        return records.shuffle(shuffle_buffer, seed=buffer_seed)

    def image_size(self, record) -> tf.Tensor:
        """int32 [2] (`parse_image_size`): only the size feature is parsed."""
        return parse_image_size(record)

    def decoder(self, ground_truth: bool = False):
        """record -> example dict (`parse_example`)."""
        return lambda record: parse_example(record, with_panoptic=ground_truth)

    def record(self, image_id: int) -> ImageRecord:
        """The files and segments_info of an image, from images.json."""
        if self._records is None:
            self._records = self._read_images()
        try:
            return self._records[int(image_id)]
        except KeyError:
            raise KeyError(f"image id {image_id} is not in "
                           f"{os.path.join(self.directory, IMAGES_FILE)}") from None

    def _read_images(self) -> dict:
        path = os.path.join(self.directory, IMAGES_FILE)
        try:
            images = read_json(path, "TFRecord image list")["images"]
            return {int(e["id"]): ImageRecord(
                image_id=int(e["id"]), image_file=e["image_file"], png_file=e["png_file"],
                segments=tuple(e["segments_info"]),
                size=tuple(e["size"]) if e["size"] is not None else None,
                png_name=e["png_name"]) for e in images}
        except (FileNotFoundError, ValueError) as err:
            raise DatasetError(str(err)) from None
        except (KeyError, TypeError) as err:
            raise DatasetError(f"{path}: not an image list of {FORMAT} ({err!r}); convert "
                               f"again") from None

    def verify(self):
        """Read every record (checksums included) and compare the counts with the manifest;
        raises DatasetError naming the first bad shard."""
        for path, expected in zip(self.files, self.counts):
            count = 0
            try:
                for _ in tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER_BYTES):
                    count += 1
            except tf.errors.OpError as err:
                raise DatasetError(f"{path}: unreadable after record {count} "
                                   f"({err.message.splitlines()[0]})") from None
            if count != expected:
                raise DatasetError(f"{path}: {count} records, but {self.manifest_path} says "
                                   f"{expected}")

    def report_bad_images(self) -> int:
        """Log one warning listing the images left out when converting; returns how many."""
        if self.skipped:
            lines = "".join(f"\n  {file}: {reason}" for file, reason in self.skipped[:MAX_LISTED])
            more = (f"\n  ... and {len(self.skipped) - MAX_LISTED} more"
                    if len(self.skipped) > MAX_LISTED else "")
            logger.warning("%d bad image(s) were left out when converting %s:%s%s",
                           len(self.skipped), self.directory, lines, more)
        return len(self.skipped)
