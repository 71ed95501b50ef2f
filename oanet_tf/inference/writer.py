"""Write panoptic predictions in the COCO panoptic format: one PNG per image plus one JSON."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from oanet_tf.data.panoptic_format import CategoryMap, id_to_rgb
from oanet_tf.fileio import atomic_open, write_json


class PanopticWriter:
    """Collects predictions image by image; PNGs are written at once, the JSON at `close`.

    Every file is written atomically, so an interrupted run never leaves a torn PNG or JSON.
    """

    def __init__(self, out_json: str, out_dir: str, categories: CategoryMap):
        self.out_json = out_json
        self.out_dir = out_dir
        self.categories = categories
        self.images, self.annotations = [], []
        os.makedirs(out_dir, exist_ok=True)

    def add(self, image_id: int, file_name: str, panoptic: np.ndarray, segments: list):
        """Write one image's PNG; `panoptic` [h, w] at the original size."""
        png_name = os.path.splitext(os.path.basename(file_name))[0] + ".png"
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
