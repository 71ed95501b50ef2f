"""Write panoptic predictions in the COCO panoptic format: one PNG per image plus one JSON."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from oanet_tf.data.panoptic_format import CategoryMap, id_to_rgb
from oanet_tf.errors import OANetError
from oanet_tf.fileio import atomic_open, write_json

PNG_EXTENSION = ".png"


def png_name_of(file_name: str) -> str:
    """The default PNG name of an input: its base name with the extension .png."""
    return os.path.splitext(os.path.basename(file_name))[0] + PNG_EXTENSION


class PanopticWriter:
    """Collects predictions image by image; PNGs are written at once, the JSON at `close`.

    Every file is written atomically, so an interrupted run never leaves a torn PNG or JSON.
    Each PNG name serves one input: a second input for a name is refused, never overwrites.
    """

    def __init__(self, out_json: str, out_dir: str, categories: CategoryMap):
        self.out_json = out_json
        self.out_dir = out_dir
        self.categories = categories
        self.images, self.annotations = [], []
        self._source_of = {}  # PNG name -> the input written there
        os.makedirs(out_dir, exist_ok=True)

    def add(self, image_id: int, file_name: str, panoptic: np.ndarray, segments: list,
            png_name: str | None = None):
        """Write one image's PNG; `panoptic` [h, w] at the original size. `png_name`: its
        path under out_dir, subfolders kept (default `png_name_of(file_name)`; a name that
        would lead out of out_dir keeps only its base name)."""
        png_name = _inside_name(png_name) if png_name else png_name_of(file_name)
        if png_name in self._source_of:
            raise OANetError(f"{file_name} and {self._source_of[png_name]} would both be "
                             f"written as {os.path.join(self.out_dir, png_name)}")
        self._source_of[png_name] = file_name
        with atomic_open(os.path.join(self.out_dir, png_name), "wb") as f:
            Image.fromarray(id_to_rgb(panoptic)).save(f, format="PNG")
        height, width = panoptic.shape
        self.images.append({"id": int(image_id), "file_name": file_name,
                            "height": int(height), "width": int(width)})
        self.annotations.append({"image_id": int(image_id), "file_name": png_name,
                                 "segments_info": segments})

    def close(self) -> str:
        write_json(self.out_json, {"images": self.images, "annotations": self.annotations,
                                   "categories": list(self.categories.categories)})
        return self.out_json


def _inside_name(name: str) -> str:
    """`name` as a relative path with '/' separators when it stays inside its folder, else
    its base name."""
    parts = name.replace(os.sep, "/").split("/")
    if os.path.isabs(name) or ".." in parts:
        return os.path.basename(name)
    return "/".join(part for part in parts if part not in ("", "."))
