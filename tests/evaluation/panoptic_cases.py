"""Panoptic ground truths and predictions for the PQ tests: a hand-computed image, and random
images (stuff bands, overlapping things, crowd and void) written as COCO panoptic files."""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from oanet_tf.data.panoptic_format import id_to_rgb
from oanet_tf.evaluation.perturb import perturb_image


# Three thing categories (few, so that two crowd segments of one category happen) and three
# stuff categories, with non-contiguous ids.
CATEGORIES = [
    {"id": 1, "name": "person", "isthing": 1, "supercategory": "person", "color": [220, 20, 60]},
    {"id": 3, "name": "car", "isthing": 1, "supercategory": "vehicle", "color": [0, 0, 142]},
    {"id": 18, "name": "dog", "isthing": 1, "supercategory": "animal", "color": [100, 0, 0]},
    {"id": 119, "name": "sky", "isthing": 0, "supercategory": "sky", "color": [70, 130, 180]},
    {"id": 125, "name": "grass", "isthing": 0, "supercategory": "plant", "color": [0, 200, 0]},
    {"id": 149, "name": "road", "isthing": 0, "supercategory": "ground", "color": [128, 64, 128]},
]


def segments_of(id_map: np.ndarray, category_of: dict, crowd_of: dict | None = None) -> list:
    """COCO segments_info of the ids present in an id map."""
    info = []
    for segment_id, area in zip(*np.unique(id_map, return_counts=True)):
        if segment_id == 0:
            continue
        info.append({"id": int(segment_id), "category_id": int(category_of[int(segment_id)]),
                     "area": int(area), "bbox": [0, 0, 1, 1],
                     "iscrowd": int((crowd_of or {}).get(int(segment_id), 0))})
    return info


def write_dataset(root: str, name: str, images: list, categories=CATEGORIES):
    """Write `images` [(image_id, id_map, segments_info)] as root/name.json + root/name/."""
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    annotations = []
    for image_id, id_map, info in images:
        file_name = f"{image_id:06d}.png"
        Image.fromarray(id_to_rgb(id_map)).save(os.path.join(folder, file_name))
        annotations.append({"image_id": image_id, "file_name": file_name, "segments_info": info})
    json_path = os.path.join(root, name + ".json")
    with open(json_path, "w") as f:
        json.dump({"images": [{"id": i, "file_name": f"{i:06d}.jpg", "height": m.shape[0],
                               "width": m.shape[1]} for i, m, _ in images],
                   "annotations": annotations, "categories": categories}, f)
    return json_path, folder


def random_ids(rng, count):
    return (1 + rng.choice(256 ** 3 - 1, size=count, replace=False)).tolist()


def random_box(rng, height, width, low=0.15, high=0.6):
    box_h = max(1, int(rng.uniform(low, high) * height))
    box_w = max(1, int(rng.uniform(low, high) * width))
    top, left = rng.integers(0, height - box_h + 1), rng.integers(0, width - box_w + 1)
    mask = np.zeros((height, width), bool)
    mask[top:top + box_h, left:left + box_w] = True
    return mask


def random_gt_image(rng, height=20, width=28):
    """A GT id map with stuff bands, overlapping things (some crowd) and void boxes."""
    things = [c["id"] for c in CATEGORIES if c["isthing"]]
    stuff = [c["id"] for c in CATEGORIES if not c["isthing"]]
    painted = []  # (mask, category, iscrowd)
    cuts = np.sort(rng.choice(np.arange(1, height), size=2, replace=False))
    for band, category in zip(np.split(np.arange(height), cuts), rng.permutation(stuff)):
        mask = np.zeros((height, width), bool)
        mask[band] = True
        painted.append((mask, int(category), 0))
    for _ in range(rng.integers(2, 7)):
        painted.append((random_box(rng, height, width), int(rng.choice(things)),
                        int(rng.random() < 0.3)))
    id_map = np.zeros((height, width), np.int64)
    ids = random_ids(rng, len(painted))
    for (mask, _, _), segment_id in zip(painted, ids):
        id_map[mask] = segment_id
    for _ in range(rng.integers(1, 3)):
        id_map[random_box(rng, height, width, 0.1, 0.35)] = 0
    category_of = {i: c for (_, c, _), i in zip(painted, ids)}
    crowd_of = {i: crowd for (_, _, crowd), i in zip(painted, ids)}
    return id_map, segments_of(id_map, category_of, crowd_of)


def random_prediction(rng, gt_ids, gt_segments):
    """perturb_image's prediction plus segments placed on void and on crowd regions."""
    pred_ids, info = perturb_image(gt_ids, gt_segments, [c["id"] for c in CATEGORIES], rng)
    category_of = {s["id"]: s["category_id"] for s in info}
    extra = []  # (mask, category)
    void = gt_ids == 0
    if void.any() and rng.random() < 0.7:  # mostly on void, a random category
        extra.append((void | (random_box(rng, *gt_ids.shape, 0.05, 0.2) & ~void),
                      int(rng.choice([c["id"] for c in CATEGORIES]))))
    for seg in gt_segments:
        if seg["iscrowd"] and rng.random() < 0.7:  # on a crowd region, own or other category
            same = rng.random() < 0.7
            things = [c["id"] for c in CATEGORIES if c["isthing"]]
            category = seg["category_id"] if same else int(rng.choice(things))
            extra.append((gt_ids == seg["id"], category))
    for (mask, category), segment_id in zip(extra, random_ids(rng, len(extra))):
        pred_ids[mask] = segment_id
        category_of[segment_id] = category
    return pred_ids, segments_of(pred_ids, category_of)


def random_dataset(root: str, seed: int, num_images: int = 6, height=20, width=28):
    rng = np.random.default_rng(seed)
    gt_images, pred_images = [], []
    for image_id in range(1, num_images + 1):
        gt_ids, gt_info = random_gt_image(rng, height, width)
        pred_ids, pred_info = random_prediction(rng, gt_ids, gt_info)
        gt_images.append((image_id, gt_ids, gt_info))
        pred_images.append((image_id, pred_ids, pred_info))
    return write_dataset(root, "gt", gt_images) + write_dataset(root, "pred", pred_images)


HAND_CATEGORIES = [{"id": 1, "name": "person", "isthing": 1},
                   {"id": 2, "name": "dog", "isthing": 1},
                   {"id": 3, "name": "cat", "isthing": 1},
                   {"id": 10, "name": "sky", "isthing": 0}]


def hand_case():
    """One 4 x 12 image. Columns of the ground truth:
    0-3 person A (16 px) | 4-5 person crowd B (8 px) | 6-7 rows 0-1 dog C (4 px), rows 2-3
    void | 8-9 sky D (8 px) | 10-11 void.
    Prediction: 0-2 person a | 3-5 person b | 6-7 dog c | 8-9 row 0 sky d, rows 1-3 dog e |
    10-11 sky f."""
    gt = np.zeros((4, 12), np.int64)
    gt[:, 0:4], gt[:, 4:6], gt[0:2, 6:8], gt[:, 8:10] = 11, 12, 13, 14
    gt_segments = [{"id": 11, "category_id": 1, "iscrowd": 0},
                   {"id": 12, "category_id": 1, "iscrowd": 1},
                   {"id": 13, "category_id": 2, "iscrowd": 0},
                   {"id": 14, "category_id": 10, "iscrowd": 0}]
    pred = np.zeros((4, 12), np.int64)
    pred[:, 0:3], pred[:, 3:6], pred[:, 6:8], pred[0, 8:10] = 21, 22, 23, 24
    pred[1:, 8:10], pred[:, 10:12] = 25, 26
    pred_segments = [{"id": 21, "category_id": 1}, {"id": 22, "category_id": 1},
                     {"id": 23, "category_id": 2}, {"id": 24, "category_id": 10},
                     {"id": 25, "category_id": 2}, {"id": 26, "category_id": 10}]
    return gt, gt_segments, pred, pred_segments


def edit_json(path, change):
    """Rewrite the JSON file at `path` with `change(data)` applied."""
    with open(path) as f:
        data = json.load(f)
    change(data)
    with open(path, "w") as f:
        json.dump(data, f)
