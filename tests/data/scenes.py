"""Tiny hand-made COCO panoptic datasets whose labels, masks and boxes are known by
construction: the scene (sky above grass, a person with a tie in front, a crowd, a void
column) written as images, PNGs and JSON (and as TFRecords), and the pipeline config that
reads it."""

import json
import os

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util

from oanet_tf.config import DataConfig, SplitConfig
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.data.panoptic_format import id_to_rgb
from oanet_tf.data.tfrecords import TFRecordSource, write_tfrecords


# Non-contiguous category ids, listed out of order: the reader must sort and map them.
SKY, PERSON, TIE, GRASS = 40, 7, 12, 25
CATEGORIES = [
    {"id": SKY, "name": "sky", "isthing": 0, "color": [70, 130, 180], "supercategory": "sky"},
    {"id": PERSON, "name": "person", "isthing": 1, "color": [220, 20, 60],
     "supercategory": "person"},
    {"id": GRASS, "name": "grass", "isthing": 0, "color": [152, 251, 152],
     "supercategory": "plant"},
    {"id": TIE, "name": "tie", "isthing": 1, "color": [188, 208, 182],
     "supercategory": "accessory"},
]
# Expected mapping: things by id (person 7 -> 0, tie 12 -> 1), then stuff (grass 25 -> 2,
# sky 40 -> 3); detector class = thing index + 1.
SEMANTIC = {PERSON: 0, TIE: 1, GRASS: 2, SKY: 3}
IGNORE = 255
HEIGHT, WIDTH = 12, 16
# Whole objects as (y1, x1, y2, x2) rectangles (end exclusive).
PERSON_BOX = (2, 3, 10, 9)
TIE_BOX = (4, 5, 7, 7)  # inside the person and in front of it
CROWD_BOX = (8, 12, 12, 16)
VOID_COLUMN = 11
SEG_SKY, SEG_GRASS, SEG_PERSON, SEG_TIE, SEG_CROWD = 1, 2, 3, 300, 70000  # R, G and B used


def _rect(box, shape=(HEIGHT, WIDTH)):
    mask = np.zeros(shape, bool)
    mask[box[0]:box[2], box[1]:box[3]] = True
    return mask


def _scene():
    """(segment id map, segments_info) of the standard scene: sky above grass, a person with
    a tie in front, a crowd of persons, and an unlabeled (void) column."""
    ids = np.full((HEIGHT, WIDTH), SEG_GRASS, np.int64)
    ids[:4] = SEG_SKY
    ids[_rect(PERSON_BOX)] = SEG_PERSON
    ids[_rect(TIE_BOX)] = SEG_TIE
    ids[_rect(CROWD_BOX)] = SEG_CROWD
    ids[:, VOID_COLUMN] = 0
    segments = [{"id": SEG_SKY, "category_id": SKY, "iscrowd": 0},
                {"id": SEG_GRASS, "category_id": GRASS, "iscrowd": 0},
                {"id": SEG_PERSON, "category_id": PERSON, "iscrowd": 0},
                {"id": SEG_TIE, "category_id": TIE, "iscrowd": 0},
                {"id": SEG_CROWD, "category_id": PERSON, "iscrowd": 1}]
    for segment in segments:
        segment["area"] = int((ids == segment["id"]).sum())
    return ids, segments


def _pixels(height=HEIGHT, width=WIDTH, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _rle(mask):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _write_dataset(root, images, instance_anns=None):
    """Write a COCO panoptic dataset under root. images: list of dicts with image_id, pixels
    ([h, w, 3] uint8 or a PIL image), ids (segment map), segments, and optional ext / exif.
    instance_anns: list of instance annotation dicts (without id), or None for no JSON."""
    split = SplitConfig(image_dir=os.path.join(root, "images"),
                        panoptic_json=os.path.join(root, "panoptic.json"),
                        panoptic_dir=os.path.join(root, "panoptic"),
                        instances_json=(os.path.join(root, "instances.json")
                                        if instance_anns is not None else ""))
    os.makedirs(split.image_dir, exist_ok=True)
    os.makedirs(split.panoptic_dir, exist_ok=True)
    entries, annotations = [], []
    for item in images:
        name = f"{item['image_id']:06d}"
        ext = item.get("ext", "png")
        pixels = item["pixels"]
        picture = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
        save_args = {"exif": item["exif"]} if "exif" in item else {}
        if ext == "jpg":
            save_args["quality"] = 95
        picture.save(os.path.join(split.image_dir, f"{name}.{ext}"), **save_args)
        Image.fromarray(id_to_rgb(item["ids"])).save(
            os.path.join(split.panoptic_dir, f"{name}.png"))
        height, width = item["ids"].shape
        entries.append({"id": item["image_id"], "file_name": f"{name}.{ext}",
                        "height": height, "width": width})
        annotations.append({"image_id": item["image_id"], "file_name": f"{name}.png",
                            "segments_info": item["segments"]})
    with open(split.panoptic_json, "w") as f:
        json.dump({"images": entries, "annotations": annotations, "categories": CATEGORIES}, f)
    if instance_anns is not None:
        anns = [dict(ann, id=k + 1) for k, ann in enumerate(instance_anns)]
        with open(split.instances_json, "w") as f:
            json.dump({"images": entries, "annotations": anns,
                       "categories": [c for c in CATEGORIES if c["isthing"]]}, f)
    return split


def _scene_instances(image_id=1):
    """Instances JSON of the scene: whole masks (the person's includes its tie), the crowd,
    and a stuff annotation as a panoptic-to-detection conversion writes (both ignored)."""
    return [{"image_id": image_id, "category_id": TIE, "iscrowd": 0,
             "segmentation": _rle(_rect(TIE_BOX))},
            {"image_id": image_id, "category_id": PERSON, "iscrowd": 0,
             "segmentation": _rle(_rect(PERSON_BOX))},
            {"image_id": image_id, "category_id": PERSON, "iscrowd": 1,
             "segmentation": _rle(_rect(CROWD_BOX))},
            {"image_id": image_id, "category_id": SKY, "iscrowd": 0,
             "segmentation": _rle(np.arange(HEIGHT)[:, None] < 4 + np.zeros((1, WIDTH)))}]


def _scene_image(image_id=1, **extra):
    ids, segments = _scene()
    return {"image_id": image_id, "pixels": _pixels(seed=image_id), "ids": ids,
            "segments": segments, **extra}


# Images of several sizes and orientations: image id -> (height, width, people), each person
# a one-row stripe (row k) over grass; and its size resized by `_config()` (shorter side to
# 2 * HEIGHT = 24: scale >= 1, so no stripe is lost).
MIXED_IMAGES = {1: (12, 12, 1), 2: (16, 12, 3), 3: (10, 20, 2), 4: (20, 10, 0),
                5: (12, 30, 1), 6: (18, 12, 2), 7: (40, 10, 1), 8: (20, 12, 1)}
MIXED_RESIZED = {1: (24, 24), 2: (32, 24), 3: (24, 48), 4: (48, 24), 5: (24, 60),
                 6: (36, 24), 7: (96, 24), 8: (40, 24)}


def _striped_image(image_id, height, width, people):
    """Grass with `people` person stripes (rows 0..people-1), pixels seeded by the id."""
    ids = np.full((height, width), SEG_GRASS, np.int64)
    segments = [{"id": SEG_GRASS, "category_id": GRASS, "iscrowd": 0}]
    for row in range(people):
        ids[row] = SEG_PERSON + row
        segments.append({"id": SEG_PERSON + row, "category_id": PERSON, "iscrowd": 0})
    for segment in segments:
        segment["area"] = int((ids == segment["id"]).sum())
    return {"image_id": image_id, "pixels": _pixels(height, width, seed=image_id), "ids": ids,
            "segments": segments}


def _mixed_split(root):
    """MIXED_IMAGES written as a split in id order (instances from the PNG)."""
    images = [_striped_image(i, *MIXED_IMAGES[i]) for i in sorted(MIXED_IMAGES)]
    return _write_dataset(root, images)


def _expected_labels():
    """Semantic and owner labels of the scene, painted region by region."""
    semantic = np.full((HEIGHT, WIDTH), SEMANTIC[GRASS], np.int32)
    semantic[:4] = SEMANTIC[SKY]
    semantic[_rect(PERSON_BOX)] = SEMANTIC[PERSON]
    semantic[_rect(TIE_BOX)] = SEMANTIC[TIE]
    semantic[_rect(CROWD_BOX)] = IGNORE
    semantic[:, VOID_COLUMN] = IGNORE
    owner = np.where(semantic <= SEMANTIC[TIE], semantic, IGNORE).astype(np.int32)
    return semantic, owner


def _three_image_split(root):
    """Image 1 is good, image 2 has no PNG (found when opening), image 3 is corrupt (found
    when decoding)."""
    split = _write_dataset(root, [_scene_image(1), _scene_image(2), _scene_image(3)])
    os.remove(os.path.join(split.panoptic_dir, "000002.png"))
    with open(os.path.join(split.image_dir, "000003.png"), "wb") as f:
        f.write(b"garbage")
    return split


def _config(**overrides):
    values = dict(short_side=2 * HEIGHT, max_side=1000,
                  scale_jitter=(1.0, 1.0), horizontal_flip=False, max_instances=5,
                  shuffle_buffer=8, num_parallel_calls=2)
    values.update(overrides)
    return DataConfig(**values)


def _convert(split, out_dir, num_shards, skip_bad_images=False):
    data = PanopticDataset.from_split(split, skip_bad_images=skip_bad_images)
    write_tfrecords(data, str(out_dir), num_shards, progress=False, workers=2)
    return data, TFRecordSource.from_dir(str(out_dir))
