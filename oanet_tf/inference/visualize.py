"""Overlay PNGs: category colours blended over the image, segment outlines and labels."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw

from oanet_tf.data.panoptic_format import VOID_ID, CategoryMap

OVERLAY_ALPHA = 0.5  # weight of the category colour over the image
OUTLINE_COLOR = (255, 255, 255)
LABEL_COLOR = (255, 255, 255)
LABEL_SHADOW = (0, 0, 0)
MIN_LABEL_AREA = 64  # segments smaller than this get no text label


def overlay(image: np.ndarray, panoptic: np.ndarray, segments: list,
            categories: CategoryMap) -> np.ndarray:
    """image [h, w, 3] uint8, panoptic [h, w] ids, COCO segments_info -> [h, w, 3] uint8."""
    colors = {c["id"]: c.get("color", (128, 128, 128)) for c in categories.categories}
    names = {c["id"]: c["name"] for c in categories.categories}
    canvas = image.astype(np.float32).copy()
    for segment in segments:
        inside = panoptic == segment["id"]
        color = np.asarray(colors[segment["category_id"]], np.float32)
        canvas[inside] = (1 - OVERLAY_ALPHA) * canvas[inside] + OVERLAY_ALPHA * color
    edges = np.zeros(panoptic.shape, bool)
    edges[1:] |= panoptic[1:] != panoptic[:-1]
    edges[:, 1:] |= panoptic[:, 1:] != panoptic[:, :-1]
    canvas[edges & (panoptic != VOID_ID)] = OUTLINE_COLOR
    picture = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for segment in segments:
        if segment.get("area", 0) < MIN_LABEL_AREA:
            continue
        rows, cols = np.nonzero(panoptic == segment["id"])
        y, x = int(np.median(rows)), int(np.median(cols))
        text = names[segment["category_id"]]
        if "score" in segment and categories.is_thing(segment["category_id"]):
            text += f" {segment['score']:.2f}"
        draw.text((x + 1, y + 1), text, fill=LABEL_SHADOW)
        draw.text((x, y), text, fill=LABEL_COLOR)
    return np.asarray(picture)


def side_by_side(*panels: np.ndarray) -> np.ndarray:
    """Panels [h, w_i, 3] of one height -> [h, sum w_i, 3], e.g. prediction beside truth."""
    return np.concatenate(panels, axis=1)


def write_overlays(dataset, pred_json: str, pred_dir: str, out_dir: str, count: int) -> list:
    """Draw the first `count` predicted images of `dataset` (prediction | ground truth) as
    PNGs in `out_dir`; returns their paths."""
    from oanet_tf.data.coco_panoptic import read_image
    from oanet_tf.data.panoptic_format import (annotations_by_image, load_panoptic_json,
                                               read_id_png)
    from oanet_tf.fileio import atomic_open

    predictions = annotations_by_image(load_panoptic_json(pred_json, "predictions"), pred_json)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for record in dataset.records:
        if len(written) >= count:
            break
        if record.image_id not in predictions:
            continue
        image = read_image(record.image_file)
        annotation = predictions[record.image_id]
        pred_ids = read_id_png(os.path.join(pred_dir, annotation["file_name"]), "prediction")
        gt_ids = read_id_png(record.png_file, "ground truth")
        picture = side_by_side(
            overlay(image, pred_ids, annotation["segments_info"], dataset.categories),
            overlay(image, gt_ids, list(record.segments), dataset.categories))
        path = os.path.join(out_dir, f"{record.image_id}_pred_vs_gt.png")
        with atomic_open(path, "wb") as f:
            Image.fromarray(picture).save(f, format="PNG")
        written.append(path)
    return written
