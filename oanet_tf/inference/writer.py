"""Write panoptic predictions in the COCO panoptic format: one PNG per image plus one JSON."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from oanet_tf.data.panoptic_format import VOID_ID, CategoryMap, id_to_rgb
from oanet_tf.fileio import atomic_open, write_json


def segments_info(panoptic: np.ndarray, segment_ids, categories, categories_map: CategoryMap,
                  extra: dict | None = None) -> list:
    """COCO `segments_info` of a panoptic id map [h, w]; area and bbox measured on the map.

    `segment_ids` and `categories` (semantic indices) describe the segments; segments with no
    pixel left (for example after resizing to the original size) are dropped. `extra` maps a
    field name to per-segment values (e.g. "score") copied into each entry.
    """
    ids, areas = np.unique(panoptic, return_counts=True)
    area_of = dict(zip(ids.tolist(), areas.tolist()))
    semantic_ids = categories_map.semantic_ids
    info = []
    for position, (segment_id, category) in enumerate(zip(segment_ids, categories)):
        segment_id, category = int(segment_id), int(category)
        if segment_id == VOID_ID or category < 0 or segment_id not in area_of:
            continue
        rows = np.flatnonzero(np.any(panoptic == segment_id, axis=1))
        cols = np.flatnonzero(np.any(panoptic == segment_id, axis=0))
        entry = {"id": segment_id, "category_id": int(semantic_ids[category]),
                 "area": int(area_of[segment_id]),
                 "bbox": [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1),
                          int(rows[-1] - rows[0] + 1)],
                 "iscrowd": 0}
        for name, values in (extra or {}).items():
            entry[name] = float(values[position])
        info.append(entry)
    return info


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
