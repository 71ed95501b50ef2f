"""Overlay PNGs: category colours blended over the image, segment outlines and labels.

Labels are white text on a dark box, in a font scaled to the image (LABEL_FONT_FRACTION of
its shorter side, never below MIN_FONT_SIZE), and never overlap: larger segments are labelled
first, each near a pixel of its own; a label that would cover one already placed is moved
beside its spot, or left out. An image too small for legible labels can be enlarged first
(`min_side`), as the demo's overlays are.
"""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from oanet_tf.data.panoptic_format import VOID_ID, CategoryMap

OVERLAY_ALPHA = 0.5  # weight of the category colour over the image
OUTLINE_COLOR = (255, 255, 255)
LABEL_COLOR = (255, 255, 255)
LABEL_BOX_COLOR = (24, 24, 24)
MIN_LABEL_AREA = 64  # segments smaller than this (in the drawn image's pixels) get no label
LABEL_FONT_FRACTION = 1 / 28  # font size as a share of the image's shorter side
MIN_FONT_SIZE = 10
LABEL_PADDING = 0.2  # of the font size, around the text inside its box
OVERLAY_MIN_SIDE = 512  # the demo's overlays enlarge smaller images to this shorter side


def overlay(image: np.ndarray, panoptic: np.ndarray, segments: list, categories: CategoryMap,
            min_side: int = 0) -> np.ndarray:
    """image [h, w, 3] uint8, panoptic [h, w] ids, COCO segments_info -> [H, W, 3] uint8:
    [h, w] unless the shorter side is below `min_side`, then both are enlarged by the integer
    factor that reaches it (nearest neighbour, so outlines stay one segment apart)."""
    factor = max(1, math.ceil(min_side / max(1, min(panoptic.shape))))
    if factor > 1:
        image = image.repeat(factor, axis=0).repeat(factor, axis=1)
        panoptic = panoptic.repeat(factor, axis=0).repeat(factor, axis=1)
        segments = [dict(s, area=s.get("area", 0) * factor * factor) for s in segments]
    colors = {c["id"]: c.get("color", (128, 128, 128)) for c in categories.categories}
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
    font = label_font(panoptic.shape)
    for box, text in place_labels(panoptic, segments, categories, font):
        draw.rectangle(box, fill=LABEL_BOX_COLOR)
        pad = _padding(font)
        draw.text((box[0] + pad, box[1] + pad), text, fill=LABEL_COLOR, font=font)
    return np.asarray(picture)


def label_font(shape) -> ImageFont.FreeTypeFont:
    """Pillow's default font at the size for an image of `shape` [h, w]."""
    size = max(MIN_FONT_SIZE, round(min(shape[:2]) * LABEL_FONT_FRACTION))
    return ImageFont.load_default(size=size)


def label_text(segment: dict, categories: CategoryMap) -> str:
    """The category's name, and the score of a thing."""
    names = dict(zip((c["id"] for c in categories.categories), categories.names()))
    text = names[segment["category_id"]]
    if "score" in segment and categories.is_thing(segment["category_id"]):
        text += f" {segment['score']:.2f}"
    return text


def place_labels(panoptic: np.ndarray, segments: list, categories: CategoryMap,
                 font) -> list:
    """-> [((x0, y0, x1, y1) label box inside the image, text)], no two boxes overlapping.

    Segments of MIN_LABEL_AREA pixels or more, largest first, each at the pixel of its own
    nearest its centroid (the box centred there, else moved above, below, left or right of
    it); a segment whose label fits nowhere free goes without."""
    height, width = panoptic.shape
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    placed = []
    large = [s for s in segments if s.get("area", 0) >= MIN_LABEL_AREA]
    for segment in sorted(large, key=lambda s: -s.get("area", 0)):
        rows, cols = np.nonzero(panoptic == segment["id"])
        if not len(rows):
            continue
        nearest = np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2)
        y, x = int(rows[nearest]), int(cols[nearest])
        text = label_text(segment, categories)
        left, top, right, bottom = measure.textbbox((0, 0), text, font=font)
        pad = _padding(font)
        box_w, box_h = right + 2 * pad, bottom + 2 * pad
        if box_w > width or box_h > height:
            continue
        for dx, dy in ((0, 0), (0, -1), (0, 1), (-1, 0), (1, 0)):
            x0 = min(max(0, x - box_w // 2 + dx * box_w), width - box_w)
            y0 = min(max(0, y - box_h // 2 + dy * box_h), height - box_h)
            box = (x0, y0, x0 + box_w - 1, y0 + box_h - 1)
            if not any(_intersect(box, other) for other, _ in placed):
                placed.append((box, text))
                break
    return placed


def _padding(font) -> int:
    return max(1, round(font.size * LABEL_PADDING))


def _intersect(a, b) -> bool:
    """Whether two inclusive pixel boxes (x0, y0, x1, y1) share a pixel."""
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


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
            overlay(image, pred_ids, annotation["segments_info"], dataset.categories,
                    OVERLAY_MIN_SIDE),
            overlay(image, gt_ids, list(record.segments), dataset.categories, OVERLAY_MIN_SIDE))
        path = os.path.join(out_dir, f"{record.image_id}_pred_vs_gt.png")
        with atomic_open(path, "wb") as f:
            Image.fromarray(picture).save(f, format="PNG")
        written.append(path)
    return written
