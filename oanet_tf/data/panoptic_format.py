"""The COCO panoptic format: segment ids in RGB PNGs, and category bookkeeping.

Segment id = R + 256 * G + 256^2 * B; id 0 is void. Categories keep their dataset ids in
files; inside the model they are contiguous indices (see `CategoryMap`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import struct

import numpy as np
from PIL import Image

from oanet_tf.errors import DatasetError
from oanet_tf.fileio import read_json

IGNORE_LABEL = 255  # semantic / ownership label of void and crowd pixels
VOID_ID = 0  # segment id of unlabeled pixels
ID_BASE = 256  # R + ID_BASE * G + ID_BASE**2 * B
MAX_SEGMENT_ID = ID_BASE ** 3  # ids are R + 256 G + 256^2 B
# What PIL raises on a bad image file (DecompressionBombError: more pixels than it allows).
IMAGE_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error,
                     Image.DecompressionBombError)


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 RGB -> [H, W] int64 segment ids."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] < 3:
        raise ValueError(f"expected an [H, W, 3] RGB array, got shape {rgb.shape}")
    rgb = rgb[..., :3].astype(np.int64)
    return rgb[..., 0] + ID_BASE * rgb[..., 1] + ID_BASE * ID_BASE * rgb[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """[H, W] integer segment ids -> [H, W, 3] uint8 RGB."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.min(initial=0) < 0 or ids.max(initial=0) >= ID_BASE ** 3:
        raise ValueError("segment ids must lie in [0, 256^3)")
    rgb = np.empty(ids.shape + (3,), dtype=np.uint8)
    for channel in range(3):
        rgb[..., channel] = ids % ID_BASE
        ids = ids // ID_BASE
    return rgb


@dataclasses.dataclass(frozen=True)
class CategoryMap:
    """Dataset category ids <-> the contiguous indices the network uses.

    Semantic classes are the thing categories (in id order) followed by the stuff categories
    (in id order): semantic index of thing k is k, of stuff j is num_things + j.
    The detector's class index of thing k is k + 1 (0 is background); the SRM channel of
    thing k is k.
    """

    categories: tuple  # the dataset's category dicts, sorted by id

    @classmethod
    def from_categories(cls, categories) -> "CategoryMap":
        cats = sorted((dict(c) for c in categories), key=lambda c: c["id"])
        ids = [c["id"] for c in cats]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate category ids in categories: {ids}")
        for c in cats:
            if "isthing" not in c:
                raise ValueError(f"category {c.get('id')} ({c.get('name')}) has no 'isthing'")
        return cls(tuple(cats))

    @functools.cached_property
    def thing_ids(self) -> list:
        return [c["id"] for c in self.categories if c["isthing"]]

    @functools.cached_property
    def stuff_ids(self) -> list:
        return [c["id"] for c in self.categories if not c["isthing"]]

    @property
    def num_things(self) -> int:
        return len(self.thing_ids)

    @property
    def num_stuff(self) -> int:
        return len(self.stuff_ids)

    @property
    def num_semantic(self) -> int:
        return len(self.categories)

    @functools.cached_property
    def semantic_ids(self) -> list:
        """Dataset category id of each semantic index."""
        return self.thing_ids + self.stuff_ids

    @functools.cached_property
    def _semantic_of(self) -> dict:
        return {cid: i for i, cid in enumerate(self.semantic_ids)}

    def is_thing(self, category_id: int) -> bool:
        return self.semantic_index(category_id) < self.num_things

    def semantic_index(self, category_id: int) -> int:
        try:
            return self._semantic_of[category_id]
        except KeyError:
            raise KeyError(f"unknown category id {category_id}") from None

    def thing_index(self, category_id: int) -> int:
        index = self.semantic_index(category_id)
        if index >= self.num_things:
            raise KeyError(f"category id {category_id} is not a thing category")
        return index

    def semantic_lookup(self, size: int = 1 << 16) -> np.ndarray:
        """Array mapping dataset category id -> semantic index (IGNORE_LABEL if unknown)."""
        table = np.full(max(size, max(self.semantic_ids) + 1), IGNORE_LABEL, np.int32)
        table[self.semantic_ids] = np.arange(self.num_semantic)
        return table

    def names(self) -> list:
        return [c["name"] for c in self.categories]


def measured_segment(ids: np.ndarray, segment_id: int, category_id: int,
                     iscrowd: int = 0) -> dict:
    """COCO segments_info entry of a segment of the id map ids [H, W], its area and bbox
    [x, y, w, h] measured on the map (ground truth: predictions are measured in the graph)."""
    mask = ids == segment_id
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    bbox = [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
    return {"id": int(segment_id), "category_id": int(category_id),
            "area": int(np.count_nonzero(mask)), "bbox": bbox, "iscrowd": int(iscrowd)}


def read_id_png(path: str, role: str) -> np.ndarray:
    """[H, W] int32 segment ids of a COCO panoptic PNG (RGB; an alpha channel is ignored)."""
    if not os.path.isfile(path):
        raise DatasetError(f"{role} PNG not found: {path}")
    try:
        image = Image.open(path)
        image.load()
    except IMAGE_READ_ERRORS as err:
        raise DatasetError(f"{path}: cannot read the {role} PNG ({err})") from None
    with image:
        if image.mode not in ("RGB", "RGBA"):
            raise DatasetError(f"{path}: {role} PNG has mode {image.mode}; COCO panoptic PNGs "
                               f"are RGB")
        width, height = image.size
        # Four bytes a pixel (PIL's own layout, so no repacking); masking off the fourth
        # leaves R + 256 G + 256^2 B.
        raw = image.tobytes("raw", "RGBX" if image.mode == "RGB" else "RGBA")
    return np.frombuffer(raw, "<i4").reshape(height, width) & (MAX_SEGMENT_ID - 1)


def load_panoptic_json(path: str, what: str) -> dict:
    """A COCO panoptic JSON (a dict with an 'annotations' list); DatasetError otherwise."""
    try:
        data = read_json(path, what)
    except (FileNotFoundError, ValueError) as err:
        raise DatasetError(str(err)) from None
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DatasetError(f"{path}: {what} has no 'annotations' list")
    return data


def load_categories(path: str) -> CategoryMap:
    """The categories of a local JSON file: a list of COCO category dicts (e.g.
    panoptic_coco_categories.json), or a whole panoptic JSON that carries them."""
    try:
        categories = read_json(path, "categories file")
    except (FileNotFoundError, ValueError) as err:
        raise DatasetError(f"{err} (the COCO panoptic categories JSON, e.g. "
                           f"panoptic_coco_categories.json; nothing is downloaded)") from None
    if isinstance(categories, dict):
        categories = categories.get("categories", [])
    if not categories:
        raise DatasetError(f"{path}: no categories found")
    try:
        return CategoryMap.from_categories(categories)
    except (ValueError, TypeError, KeyError) as err:
        raise DatasetError(f"{path}: not a list of categories ({err})") from None


def is_integer_id(value) -> bool:
    """COCO ids are JSON integers (a string or a boolean is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def file_in(folder: str, name, what: str, allow_outside: bool = False) -> str:
    """The path of the file `name` (a JSON's file_name) in `folder`. Unless `allow_outside`,
    it must stay there: not absolute, no '..', no symlink leading out of `folder`."""
    if not isinstance(name, str) or not name:
        raise DatasetError(f"{what} file_name {name!r} is not a file name")
    path = os.path.join(folder, name)
    if allow_outside:
        return path
    root = os.path.realpath(folder)
    if (os.path.isabs(name) or ".." in name.replace("\\", "/").split("/")
            or os.path.commonpath([root, os.path.realpath(path)]) != root):
        raise DatasetError(f"{what} file_name {name!r} leads outside {folder} (an absolute "
                           f"path, '..' or a symlink out of it); allow_outside_paths: true "
                           f"in the split's config (data.train / data.val) allows it")
    return path


def annotations_by_image(data: dict, path: str) -> dict:
    """{image_id: annotation} of a panoptic JSON, each checked for its required fields."""
    found = {}
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or not {"image_id", "file_name", "segments_info"} <= set(ann):
            raise DatasetError(f"{path}: annotation {str(ann)[:80]} needs image_id, file_name and "
                               f"segments_info")
        if not is_integer_id(ann["image_id"]):
            raise DatasetError(f"{path}: annotation image_id {ann['image_id']!r} is not an "
                               f"integer")
        if not isinstance(ann["segments_info"], list):
            raise DatasetError(f"{path}: image {ann['image_id']}: segments_info is not a list")
        if ann["image_id"] in found:
            raise DatasetError(f"{path}: image {ann['image_id']} has two annotations")
        found[ann["image_id"]] = ann
    return found
