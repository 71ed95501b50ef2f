"""A COCO panoptic dataset on disk: parsed and validated once, decoded one image at a time.

`PanopticDataset` reads the panoptic JSON (and, in the paper's setting, COCO's instances JSON
whose masks overlap: a person's mask includes the tie in front of it), checks that the files
belong together, and decodes one image into numpy arrays at its original resolution
(`load_example`). Without an instances JSON, instance masks are the non-crowd thing segments
of the panoptic PNG, which never overlap (the paper's Table 3 "pano-instance GT").

Every problem raises `DatasetError` naming the file. With `skip_bad_images` a bad image is
left out instead, and its reason is kept for `report_bad_images`. The JSON's file names must
lead into their folders (no absolute path, '..' or symlink out) unless `allow_outside_paths`.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import logging
import os
import threading

import numpy as np
from PIL import ExifTags, Image, ImageOps
from pycocotools.coco import COCO

from oanet_tf.config import SplitConfig
from oanet_tf.data.panoptic_format import (IGNORE_LABEL, IMAGE_READ_ERRORS, VOID_ID,
                                           CategoryMap, annotations_by_image, file_in,
                                           is_integer_id, load_panoptic_json, read_id_png)
from oanet_tf.errors import DatasetError
from oanet_tf.fileio import read_json

logger = logging.getLogger(__name__)

MAX_LISTED = 5  # ids / images named in one message before "..."
# EXIF orientations whose upright image is the stored one transposed, transversed or turned
# by 90 degrees: height and width swap (see PIL's ImageOps.exif_transpose).
SWAPPING_EXIF_ORIENTATIONS = (5, 6, 7, 8)
# The size hint of an image whose header cannot be read (decoding it will fail anyway).
UNKNOWN_SIZE = (1, 1)


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One annotated image: where its files are and its `segments_info`."""

    image_id: int
    image_file: str  # path of the image (JPEG, PNG, ...)
    png_file: str  # path of the panoptic PNG
    segments: tuple  # the JSON's segments_info dicts
    size: tuple | None = None  # (height, width) as the JSON's image entry gives it
    png_name: str = ""  # the PNG's file_name in the JSON (relative to the panoptic folder)


def _listed(values) -> str:
    values = list(values)
    shown = ", ".join(str(v) for v in values[:MAX_LISTED])
    return shown + (", ..." if len(values) > MAX_LISTED else "")


def read_image(path: str) -> np.ndarray:
    """[h, w, 3] uint8 RGB of an image file, EXIF orientation applied (grayscale, palette,
    RGBA and CMYK files are converted; an alpha channel is dropped)."""
    if not os.path.isfile(path):
        raise DatasetError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            upright = ImageOps.exif_transpose(image)
            return np.asarray(upright.convert("RGB"))
    except IMAGE_READ_ERRORS as err:
        raise DatasetError(f"{path}: cannot read the image ({err})") from None


def read_image_size(path: str) -> tuple:
    """(height, width) of an image file, upright (EXIF orientation applied), from its header
    only; UNKNOWN_SIZE when the header cannot be read."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(ExifTags.Base.Orientation)
    except IMAGE_READ_ERRORS:
        return UNKNOWN_SIZE
    return (width, height) if orientation in SWAPPING_EXIF_ORIENTATIONS else (height, width)


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """[n, h, w] non-empty masks -> [n, 4] float32 boxes (y1, x1, y2, x2), continuous
    coordinates: a mask covering rows 3..5 spans y1 = 3, y2 = 6."""
    rows = masks.any(axis=2)  # [n, h]
    cols = masks.any(axis=1)  # [n, w]
    height, width = masks.shape[1:]
    y1 = rows.argmax(axis=1)
    y2 = height - rows[:, ::-1].argmax(axis=1)
    x1 = cols.argmax(axis=1)
    x2 = width - cols[:, ::-1].argmax(axis=1)
    return np.stack([y1, x1, y2, x2], axis=1).astype(np.float32).reshape(-1, 4)


class PanopticDataset:
    """A validated COCO panoptic split; `load_example(i)` decodes image i to numpy arrays."""

    def __init__(self, image_dir: str, panoptic_json: str, panoptic_dir: str,
                 instances_json: str = "", skip_bad_images: bool = False,
                 allow_outside_paths: bool = False):
        self.image_dir = image_dir
        self.panoptic_json = panoptic_json
        self.panoptic_dir = panoptic_dir
        self.instances_json = instances_json
        self.skip_bad_images = skip_bad_images
        self.allow_outside_paths = allow_outside_paths
        self._bad = {}  # file -> reason, in the order found (a dict: an image counts once)
        self._lock = threading.Lock()  # examples are decoded on several threads

        data = load_panoptic_json(panoptic_json, "panoptic JSON")
        self.categories = self._category_map(data)
        candidates = self._parse_records(data)
        self._instances = {}  # image id -> non-crowd thing annotations of the instances JSON
        self._coco = None
        if instances_json:
            self._coco = self._load_instances(instances_json)
        self.records = []
        for record in candidates:
            try:
                self._check_record(record)
            except DatasetError as err:
                self._skip_or_raise(record.image_file, err)
            else:
                self.records.append(record)
        if not self.records:
            raise DatasetError(f"{panoptic_json}: no usable image "
                               f"({len(self._bad)} bad, see the warnings)"
                               if self._bad else f"{panoptic_json}: no annotated image")
        self._index_of_id = {r.image_id: i for i, r in enumerate(self.records)}
        self._image_sizes = None  # computed on first use

    @classmethod
    def from_split(cls, split: SplitConfig, skip_bad_images: bool = False) -> "PanopticDataset":
        return cls(split.image_dir, split.panoptic_json, split.panoptic_dir,
                   split.instances_json, skip_bad_images=skip_bad_images,
                   allow_outside_paths=split.allow_outside_paths)

    def __len__(self) -> int:
        return len(self.records)

    def record(self, image_id: int) -> ImageRecord:
        """The record of a COCO image id (to map predictions back to files)."""
        try:
            return self.records[self._index_of_id[int(image_id)]]
        except KeyError:
            raise KeyError(f"image id {image_id} is not in {self.panoptic_json}") from None

    @property
    def image_sizes(self) -> np.ndarray:
        """int32 [N, 2] (height, width) of each image without decoding it, to group images
        by shape: the JSON's, else the file header's (a hint: a wrong JSON entry shows only
        when decoding)."""
        if self._image_sizes is None:
            self._image_sizes = np.array(
                [r.size if r.size is not None else read_image_size(r.image_file)
                 for r in self.records], np.int32).reshape(-1, 2)
        return self._image_sizes

    # ------------------------------------------------------------------ as an input source

    # `source.Source`, for `pipeline.build_dataset`: the members and items are image indices,
    # decoded by `load_or_skip` inside `tf.numpy_function`. (TensorFlow is imported here, when
    # a pipeline is built: parsing and decoding alone never load it.)

    def pipeline_share(self, num_pipelines: int, pipeline_id: int) -> tuple:
        """(image indices int64 [n], n): every num_pipelines-th image from `pipeline_id`."""
        import tensorflow as tf

        share = range(pipeline_id, len(self), num_pipelines)
        return tf.range(pipeline_id, len(self), num_pipelines, dtype=tf.int64), len(share)

    def epoch_items(self, members, shuffle_key, shuffle_buffer: int):
        """An index is its own item: the permutation of the members is the whole shuffle."""
        return members

    def image_size(self, index):
        """int32 [2] of `image_sizes` at a (tensor) index."""
        import tensorflow as tf

        return tf.gather(tf.constant(self.image_sizes, tf.int32), index)

    def decoder(self, ground_truth: bool = False):
        """index -> example dict (`source.numpy_decoder` of `load_or_skip`)."""
        from oanet_tf.data.source import numpy_decoder

        return numpy_decoder(self.load_or_skip, self.skip_bad_images, ground_truth)

    @property
    def uses_instances_json(self) -> bool:
        """True when instance masks come from the instances JSON (they may overlap)."""
        return self._coco is not None

    # ------------------------------------------------------------------ bad images

    @property
    def bad_images(self) -> list:
        """(file, reason) of every image skipped so far."""
        with self._lock:
            return list(self._bad.items())

    def _skip_or_raise(self, file: str, err: DatasetError):
        if not self.skip_bad_images:
            raise err
        with self._lock:
            self._bad.setdefault(file, str(err))

    def report_bad_images(self) -> int:
        """Log one warning summarising the skipped images; returns how many there were."""
        bad = self.bad_images
        if bad:
            lines = "".join(f"\n  {file}: {reason}" for file, reason in bad[:MAX_LISTED])
            more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
            logger.warning("skipped %d bad image(s) of %s:%s%s", len(bad), self.panoptic_json,
                           lines, more)
        return len(bad)

    # ------------------------------------------------------------------ parsing

    def _category_map(self, data: dict) -> CategoryMap:
        categories = data.get("categories")
        if not isinstance(categories, list) or not categories:
            raise DatasetError(f"{self.panoptic_json}: no 'categories' list")
        for cat in categories:
            if not isinstance(cat, dict) or not {"id", "name", "isthing"} <= set(cat):
                raise DatasetError(f"{self.panoptic_json}: category {str(cat)[:80]} needs "
                                   f"'id', 'name' and 'isthing'")
        try:
            category_map = CategoryMap.from_categories(categories)
        except ValueError as err:
            raise DatasetError(f"{self.panoptic_json}: {err}") from None
        if category_map.num_things == 0:
            raise DatasetError(f"{self.panoptic_json}: no thing category (isthing = 1)")
        return category_map

    def _parse_records(self, data: dict) -> list:
        """One record per annotation, in the JSON's order (structure errors always raise)."""
        images = data.get("images")
        if not isinstance(images, list):
            raise DatasetError(f"{self.panoptic_json}: no 'images' list")
        file_of, size_of = {}, {}
        for image in images:
            if not isinstance(image, dict) or not {"id", "file_name"} <= set(image):
                raise DatasetError(f"{self.panoptic_json}: image entry {str(image)[:80]} needs "
                                   f"'id' and 'file_name'")
            if not is_integer_id(image["id"]):
                raise DatasetError(f"{self.panoptic_json}: image id {image['id']!r} "
                                   f"({image['file_name']}) is not an integer")
            if image["id"] in file_of:
                raise DatasetError(f"{self.panoptic_json}: two 'images' entries have id "
                                   f"{image['id']} ({file_of[image['id']]}, "
                                   f"{image['file_name']})")
            file_of[image["id"]] = image["file_name"]
            size = (image.get("height"), image.get("width"))
            if all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
                size_of[image["id"]] = size
        records = []
        for image_id, ann in annotations_by_image(data, self.panoptic_json).items():
            if image_id not in file_of:
                raise DatasetError(f"{self.panoptic_json}: annotation of image {image_id} "
                                   f"({ann['file_name']}) has no entry in 'images'")
            for segment in ann["segments_info"]:
                if not isinstance(segment, dict) or not {"id", "category_id"} <= set(segment):
                    raise DatasetError(f"{self.panoptic_json}: image {image_id}: segment "
                                       f"{str(segment)[:80]} needs 'id' and 'category_id'")
            where = f"{self.panoptic_json}: image {image_id}:"
            records.append(ImageRecord(
                image_id=int(image_id),
                image_file=file_in(self.image_dir, file_of[image_id], f"{where} image",
                                   self.allow_outside_paths),
                png_file=file_in(self.panoptic_dir, ann["file_name"], f"{where} panoptic PNG",
                                 self.allow_outside_paths),
                segments=tuple(ann["segments_info"]), size=size_of.get(image_id),
                png_name=ann["file_name"]))
        return records

    def _check_record(self, record: ImageRecord):
        """Per-image problems found without decoding: files, segment ids, categories."""
        where = f"{self.panoptic_json}: image {record.image_id} ({record.png_file})"
        for path, what in ((record.image_file, "image"), (record.png_file, "panoptic PNG")):
            if not os.path.isfile(path):
                raise DatasetError(f"{what} not found: {path} (image {record.image_id} of "
                                   f"{self.panoptic_json})")
        ids = [s["id"] for s in record.segments]
        duplicates = sorted(i for i, n in collections.Counter(ids).items() if n > 1)
        if duplicates:
            raise DatasetError(f"{where}: duplicate segment id(s) {_listed(duplicates)}")
        if VOID_ID in ids:
            raise DatasetError(f"{where}: segment id {VOID_ID} is reserved for void")
        unknown = sorted({s["category_id"] for s in record.segments}
                         - set(self.categories.semantic_ids))
        if unknown:
            raise DatasetError(f"{where}: unknown category id(s) {_listed(unknown)} (not in "
                               f"the JSON's categories)")
        if self._coco is not None and record.image_id not in self._coco.imgs:
            raise DatasetError(f"{self.instances_json}: has no image {record.image_id} "
                               f"({record.image_file}) of {self.panoptic_json}")

    def _load_instances(self, path: str) -> COCO:
        """The instances JSON, validated against the panoptic categories, as a pycocotools
        COCO object (for decoding polygons and RLE)."""
        try:
            data = read_json(path, "instances JSON")
        except (FileNotFoundError, ValueError) as err:
            raise DatasetError(str(err)) from None
        if (not isinstance(data, dict) or not isinstance(data.get("images"), list)
                or not isinstance(data.get("annotations"), list)):
            raise DatasetError(f"{path}: an instances JSON needs 'images' and 'annotations' "
                               f"lists")
        image_ids = set()
        for image in data["images"]:
            if not isinstance(image, dict) or not {"id", "height", "width"} <= set(image):
                raise DatasetError(f"{path}: image entry {str(image)[:80]} needs 'id', "
                                   f"'height' and 'width'")
            image_ids.add(image["id"])
        known_categories = set(self.categories.semantic_ids)
        for ann in data["annotations"]:
            if not isinstance(ann, dict) or not {"id", "image_id", "category_id",
                                                 "segmentation"} <= set(ann):
                raise DatasetError(f"{path}: annotation {str(ann)[:80]} needs 'id', "
                                   f"'image_id', 'category_id' and 'segmentation'")
            if ann["image_id"] not in image_ids:
                raise DatasetError(f"{path}: annotation {ann['id']} references image "
                                   f"{ann['image_id']}, which is not in its 'images'")
            if ann["category_id"] not in known_categories:
                raise DatasetError(f"{path}: annotation {ann['id']} has category id "
                                   f"{ann['category_id']}, which is not a category of "
                                   f"{self.panoptic_json}")
            # Crowd regions are not instances; stuff annotations (a panoptic-to-detection
            # conversion has them) are not either.
            if not ann.get("iscrowd", 0) and self.categories.is_thing(ann["category_id"]):
                self._instances.setdefault(ann["image_id"], []).append(ann)
        coco = COCO()
        coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco.createIndex()
        return coco

    # ------------------------------------------------------------------ decoding

    def load_example(self, index: int, with_panoptic: bool = False) -> dict:
        """Decode image `index` at its original resolution.

        Returns numpy arrays: image uint8 [h, w, 3] RGB; boxes float32 [n, 4] (y1, x1, y2, x2);
        classes int32 [n] (thing index + 1); masks uint8 [n, h, w] 0/1; semantic int32 [h, w]
        (semantic index, 255 on void and crowd); owner int32 [h, w] (thing index of the
        non-crowd thing segment owning the pixel in the PNG, 255 elsewhere); image_id int64;
        original_size int32 [2] (h, w); with `with_panoptic` also panoptic int32 [h, w], the
        PNG's segment ids (what evaluation scores against). Raises DatasetError on any
        inconsistency.
        """
        record = self.records[index]
        image = read_image(record.image_file)
        segment_map = read_id_png(record.png_file, "panoptic")
        if segment_map.shape != image.shape[:2]:
            raise DatasetError(f"{record.png_file}: panoptic PNG is {segment_map.shape[0]}x"
                               f"{segment_map.shape[1]} but its image {record.image_file} is "
                               f"{image.shape[0]}x{image.shape[1]} (height x width)")
        semantic, owner, slots, slot_ids = self._labels(record, segment_map)
        if self._coco is not None:
            masks, classes = self._instance_masks(record, image.shape[:2])
        else:
            masks, classes = self._png_instance_masks(record, slots, slot_ids)
        keep = masks.any(axis=(1, 2))
        masks, classes = masks[keep], classes[keep]
        example = {
            "image": image,
            "boxes": mask_boxes(masks),
            "classes": classes,
            "masks": masks,
            "semantic": semantic,
            "owner": owner,
            "image_id": np.int64(record.image_id),
            "original_size": np.array(image.shape[:2], np.int32),
        }
        if with_panoptic:
            example["panoptic"] = segment_map
        return example

    def load_or_skip(self, index: int, with_panoptic: bool = False) -> dict | None:
        """`load_example`, or None for a bad image when skipping bad images (recorded)."""
        try:
            return self.load_example(index, with_panoptic)
        except DatasetError as err:
            self._skip_or_raise(self.records[index].image_file, err)
            return None

    def _labels(self, record: ImageRecord, segment_map: np.ndarray):
        """Semantic and owner labels [h, w] int32, the pixels' segment slots [h, w] and the
        segment id of each slot, after checking PNG ids against segments_info."""
        slot_ids, slots = np.unique(segment_map, return_inverse=True)
        slots = slots.reshape(segment_map.shape)
        segment_of = {s["id"]: s for s in record.segments}
        in_png = set(slot_ids.tolist()) - {VOID_ID}
        not_in_json = sorted(in_png - set(segment_of))
        if not_in_json:
            raise DatasetError(f"{record.png_file}: segment id(s) {_listed(not_in_json)} of the "
                               f"PNG are not in segments_info of image {record.image_id} in "
                               f"{self.panoptic_json}")
        not_in_png = sorted(set(segment_of) - in_png)
        if not_in_png:
            raise DatasetError(f"{record.png_file}: segment id(s) {_listed(not_in_png)} of "
                               f"segments_info (image {record.image_id} in "
                               f"{self.panoptic_json}) do not occur in the PNG")
        semantic_of_slot = np.full(len(slot_ids), IGNORE_LABEL, np.int32)
        owner_of_slot = np.full(len(slot_ids), IGNORE_LABEL, np.int32)
        for slot, segment_id in enumerate(slot_ids.tolist()):
            segment = segment_of.get(segment_id)
            if segment is None or segment.get("iscrowd", 0):
                continue
            index = self.categories.semantic_index(segment["category_id"])
            semantic_of_slot[slot] = index
            if index < self.categories.num_things:
                owner_of_slot[slot] = index
        return semantic_of_slot[slots], owner_of_slot[slots], slots, slot_ids

    def _png_instance_masks(self, record: ImageRecord, slots, slot_ids):
        """Masks [n, h, w] uint8 and classes [n] int32 of the PNG's non-crowd thing segments
        (non-overlapping), in segments_info order."""
        slot_of = {segment_id: slot for slot, segment_id in enumerate(slot_ids.tolist())}
        chosen, classes = [], []
        for segment in record.segments:
            if segment.get("iscrowd", 0) or not self.categories.is_thing(segment["category_id"]):
                continue
            chosen.append(slot_of[segment["id"]])
            classes.append(self.categories.thing_index(segment["category_id"]) + 1)
        masks = (slots[None] == np.array(chosen, np.int64)[:, None, None]).astype(np.uint8)
        return masks, np.array(classes, np.int32)

    def _instance_masks(self, record: ImageRecord, size):
        """Masks [n, h, w] uint8 and classes [n] int32 of the instances JSON's non-crowd
        thing annotations (they may overlap), in the file's order."""
        masks, classes = [], []
        for ann in self._instances.get(record.image_id, ()):
            try:
                mask = self._coco.annToMask(ann)
            except Exception as err:  # pycocotools raises bare Exceptions on bad input
                raise DatasetError(f"{self.instances_json}: annotation {ann['id']} of image "
                                   f"{record.image_id}: cannot decode its segmentation "
                                   f"({err})") from None
            if mask.shape != tuple(size):
                raise DatasetError(f"{self.instances_json}: annotation {ann['id']} of image "
                                   f"{record.image_id} has a {mask.shape[0]}x{mask.shape[1]} "
                                   f"mask but {record.image_file} is {size[0]}x{size[1]} "
                                   f"(height x width)")
            masks.append(mask.astype(np.uint8))
            classes.append(self.categories.thing_index(ann["category_id"]) + 1)
        stacked = np.stack(masks) if masks else np.zeros((0,) + tuple(size), np.uint8)
        return stacked, np.array(classes, np.int32)
