"""The COCO panoptic reader and the tf.data pipeline, on tiny hand-made datasets whose labels,
masks and boxes are known by construction, on the synthetic dataset and on real COCO files."""

import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from pycocotools import mask as mask_util

from oanet_tf.config import DataConfig, SplitConfig
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.data.panoptic_format import id_to_rgb, rgb_to_id
from oanet_tf.data.pipeline import build_dataset
from oanet_tf.data.splits import synthetic_split
from oanet_tf.errors import DatasetError

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


@pytest.fixture
def scene_split(tmp_path):
    return _write_dataset(str(tmp_path), [_scene_image()], _scene_instances())


# ------------------------------------------------------------------------------ reader

def test_categories_come_from_the_json(scene_split):
    data = PanopticDataset.from_split(scene_split)
    assert data.categories.thing_ids == [PERSON, TIE]
    assert data.categories.semantic_ids == [PERSON, TIE, GRASS, SKY]
    assert len(data) == 1 and data.uses_instances_json


def test_labels_void_and_crowd(scene_split):
    example = PanopticDataset.from_split(scene_split).load_example(0)
    semantic, owner = _expected_labels()
    np.testing.assert_array_equal(example["semantic"], semantic)
    np.testing.assert_array_equal(example["owner"], owner)
    assert example["semantic"].dtype == np.int32 and example["owner"].dtype == np.int32
    with Image.open(os.path.join(scene_split.image_dir, "000001.png")) as image:
        np.testing.assert_array_equal(example["image"], np.asarray(image))
    assert example["image_id"] == 1 and example["image_id"].dtype == np.int64
    np.testing.assert_array_equal(example["original_size"], [HEIGHT, WIDTH])


def test_overlapping_masks_from_instances_json(scene_split):
    example = PanopticDataset.from_split(scene_split).load_example(0)
    # File order (tie, then person); crowd and stuff annotations are not instances.
    np.testing.assert_array_equal(example["classes"], [2, 1])
    np.testing.assert_array_equal(example["masks"][0], _rect(TIE_BOX))
    np.testing.assert_array_equal(example["masks"][1], _rect(PERSON_BOX))  # includes the tie
    np.testing.assert_array_equal(example["boxes"], [TIE_BOX, PERSON_BOX])
    assert example["masks"].dtype == np.uint8 and example["boxes"].dtype == np.float32


def test_non_overlapping_masks_from_png(tmp_path):
    split = _write_dataset(str(tmp_path), [_scene_image()])
    data = PanopticDataset.from_split(split)
    example = data.load_example(0)
    assert not data.uses_instances_json
    # segments_info order (person, tie); the person loses the tie's pixels; no crowd.
    np.testing.assert_array_equal(example["classes"], [1, 2])
    np.testing.assert_array_equal(example["masks"][0], _rect(PERSON_BOX) & ~_rect(TIE_BOX))
    np.testing.assert_array_equal(example["masks"][1], _rect(TIE_BOX))
    assert example["masks"].sum(axis=0).max() == 1
    np.testing.assert_array_equal(example["boxes"], [PERSON_BOX, TIE_BOX])


def test_empty_instance_masks_are_dropped(tmp_path):
    anns = _scene_instances()
    anns[0]["segmentation"] = _rle(np.zeros((HEIGHT, WIDTH), bool))
    example = PanopticDataset.from_split(
        _write_dataset(str(tmp_path), [_scene_image()], anns)).load_example(0)
    np.testing.assert_array_equal(example["classes"], [1])
    np.testing.assert_array_equal(example["boxes"], [PERSON_BOX])


def test_image_without_things(tmp_path):
    ids = np.where(np.arange(HEIGHT)[:, None] < 5, SEG_SKY, SEG_GRASS) + np.zeros((1, WIDTH),
                                                                                  np.int64)
    segments = [{"id": SEG_SKY, "category_id": SKY}, {"id": SEG_GRASS, "category_id": GRASS}]
    split = _write_dataset(str(tmp_path), [{"image_id": 9, "pixels": _pixels(), "ids": ids,
                                            "segments": segments}], [])
    example = PanopticDataset.from_split(split).load_example(0)
    assert example["masks"].shape == (0, HEIGHT, WIDTH) and example["boxes"].shape == (0, 4)
    assert (example["owner"] == IGNORE).all()
    np.testing.assert_array_equal(example["semantic"], np.where(ids == SEG_SKY, 3, 2))


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_grayscale_and_rgba_images_become_rgb(tmp_path, mode):
    pixels = _pixels()
    if mode == "L":
        picture = Image.fromarray(pixels[..., 0], "L")
        expected = np.repeat(pixels[..., :1], 3, axis=2)
    else:
        alpha = np.full((HEIGHT, WIDTH, 1), 7, np.uint8)
        picture = Image.fromarray(np.concatenate([pixels, alpha], axis=2), "RGBA")
        expected = pixels
    split = _write_dataset(str(tmp_path), [_scene_image(pixels=picture)])
    image = PanopticDataset.from_split(split).load_example(0)["image"]
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image, expected)


def test_exif_orientation_is_applied(tmp_path):
    # Upright: four flat quadrants. The file stores it turned a quarter counter-clockwise
    # with EXIF orientation 6 ("rotate 90 degrees clockwise to display").
    upright = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    colors = {(0, 0): (250, 0, 0), (0, 1): (0, 250, 0), (1, 0): (0, 0, 250),
              (1, 1): (250, 250, 0)}
    half_h, half_w = HEIGHT // 2, WIDTH // 2
    for (qy, qx), color in colors.items():
        upright[qy * half_h:(qy + 1) * half_h, qx * half_w:(qx + 1) * half_w] = color
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(upright, k=1)))
    split = _write_dataset(str(tmp_path), [_scene_image(pixels=stored, ext="jpg", exif=exif)])
    image = PanopticDataset.from_split(split).load_example(0)["image"]
    assert image.shape == (HEIGHT, WIDTH, 3)
    for (qy, qx), color in colors.items():
        # Quadrant centres (JPEG blurs the edges).
        centre = image[qy * half_h + 2:(qy + 1) * half_h - 2, qx * half_w + 2:(qx + 1) * half_w - 2]
        assert np.abs(centre.astype(int) - color).max() < 20


# ------------------------------------------------------------------------------ errors

def _raises_naming(path, fn):
    with pytest.raises(DatasetError) as info:
        fn()
    assert path in str(info.value), str(info.value)
    return str(info.value)


def test_missing_image(scene_split):
    path = os.path.join(scene_split.image_dir, "000001.png")
    os.remove(path)
    message = _raises_naming(path, lambda: PanopticDataset.from_split(scene_split))
    assert "not found" in message


def test_missing_png(scene_split):
    path = os.path.join(scene_split.panoptic_dir, "000001.png")
    os.remove(path)
    message = _raises_naming(path, lambda: PanopticDataset.from_split(scene_split))
    assert "not found" in message


def test_corrupt_image(scene_split):
    path = os.path.join(scene_split.image_dir, "000001.png")
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n this is not an image")
    data = PanopticDataset.from_split(scene_split)
    assert "cannot read" in _raises_naming(path, lambda: data.load_example(0))


def test_truncated_jpeg(tmp_path):
    split = _write_dataset(str(tmp_path), [_scene_image(ext="jpg")])
    path = os.path.join(split.image_dir, "000001.jpg")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])
    dataset = PanopticDataset.from_split(split)
    _raises_naming(path, lambda: dataset.load_example(0))


def test_png_id_missing_from_segments_info(tmp_path):
    image = _scene_image()
    image["segments"] = [s for s in image["segments"] if s["id"] != SEG_TIE]
    split = _write_dataset(str(tmp_path), [image])
    data = PanopticDataset.from_split(split)
    message = _raises_naming(os.path.join(split.panoptic_dir, "000001.png"),
                             lambda: data.load_example(0))
    assert str(SEG_TIE) in message and "not in segments_info" in message


def test_segments_info_id_missing_from_png(tmp_path):
    image = _scene_image()
    image["segments"].append({"id": 4242, "category_id": TIE, "iscrowd": 0})
    split = _write_dataset(str(tmp_path), [image])
    data = PanopticDataset.from_split(split)
    message = _raises_naming(os.path.join(split.panoptic_dir, "000001.png"),
                             lambda: data.load_example(0))
    assert "4242" in message and "do not occur in the PNG" in message


def test_unknown_category(tmp_path):
    image = _scene_image()
    image["segments"][0]["category_id"] = 99
    split = _write_dataset(str(tmp_path), [image])
    message = _raises_naming(split.panoptic_json, lambda: PanopticDataset.from_split(split))
    assert "unknown category id(s) 99" in message


def test_image_and_png_sizes_differ(tmp_path):
    split = _write_dataset(str(tmp_path), [_scene_image(pixels=_pixels(HEIGHT + 1, WIDTH))])
    data = PanopticDataset.from_split(split)
    message = _raises_naming(os.path.join(split.panoptic_dir, "000001.png"),
                             lambda: data.load_example(0))
    assert os.path.join(split.image_dir, "000001.png") in message
    assert f"{HEIGHT}x{WIDTH}" in message and f"{HEIGHT + 1}x{WIDTH}" in message


def test_instances_reference_unknown_image(tmp_path):
    anns = _scene_instances()
    anns[1]["image_id"] = 5
    split = _write_dataset(str(tmp_path), [_scene_image()], anns)
    message = _raises_naming(split.instances_json, lambda: PanopticDataset.from_split(split))
    assert "references image 5" in message


def test_instances_reference_unknown_category(tmp_path):
    anns = _scene_instances()
    anns[0]["category_id"] = 3
    split = _write_dataset(str(tmp_path), [_scene_image()], anns)
    message = _raises_naming(split.instances_json, lambda: PanopticDataset.from_split(split))
    assert "category id 3" in message


def test_instance_mask_size_differs_from_image(tmp_path):
    anns = _scene_instances()
    anns[1]["segmentation"] = _rle(np.ones((HEIGHT, WIDTH + 2), bool))
    split = _write_dataset(str(tmp_path), [_scene_image()], anns)
    data = PanopticDataset.from_split(split)
    _raises_naming(split.instances_json, lambda: data.load_example(0))


def test_malformed_panoptic_json(tmp_path):
    path = str(tmp_path / "panoptic.json")
    with open(path, "w") as f:
        f.write("{not json")
    _raises_naming(path, lambda: PanopticDataset(str(tmp_path), path, str(tmp_path)))


# ------------------------------------------------------------------------------ skipping

def _three_image_split(root):
    """Image 1 is good, image 2 has no PNG (found when opening), image 3 is corrupt (found
    when decoding)."""
    split = _write_dataset(root, [_scene_image(1), _scene_image(2), _scene_image(3)])
    os.remove(os.path.join(split.panoptic_dir, "000002.png"))
    with open(os.path.join(split.image_dir, "000003.png"), "wb") as f:
        f.write(b"garbage")
    return split


def test_skip_bad_images_counts_and_reports(tmp_path, caplog):
    split = _three_image_split(str(tmp_path))
    data = PanopticDataset.from_split(split, skip_bad_images=True)
    assert [r.image_id for r in data.records] == [1, 3]
    assert [file for file, _ in data.bad_images] == [os.path.join(split.image_dir, "000002.png")]
    assert data.load_or_skip(0) is not None
    assert data.load_or_skip(1) is None and data.load_or_skip(1) is None  # counted once
    files = [file for file, _ in data.bad_images]
    assert files[1] == os.path.join(split.image_dir, "000003.png")
    assert "not found" in data.bad_images[0][1] and "cannot read" in data.bad_images[1][1]
    with caplog.at_level(logging.WARNING, logger="oanet_tf"):
        assert data.report_bad_images() == 2
    assert "skipped 2 bad image(s)" in caplog.text and "000003.png" in caplog.text


def test_pipeline_filters_bad_images(tmp_path):
    split = _three_image_split(str(tmp_path))
    config = DataConfig(short_side=HEIGHT, max_side=WIDTH, padded_size=(32, 32),
                        max_instances=4)
    data = PanopticDataset.from_split(split, skip_bad_images=True)
    batches = list(build_dataset(data, config, training=False, batch_size=2))
    assert [b["image_id"].numpy().tolist() for b in batches] == [[1]]
    assert len(data.bad_images) == 2


def test_pipeline_without_skipping_stops_on_a_bad_image(tmp_path):
    split = _write_dataset(str(tmp_path), [_scene_image(1), _scene_image(2)])
    path = os.path.join(split.image_dir, "000002.png")
    with open(path, "wb") as f:
        f.write(b"garbage")
    config = DataConfig(short_side=HEIGHT, max_side=WIDTH, padded_size=(32, 32))
    data = PanopticDataset.from_split(split)
    with pytest.raises(tf.errors.OpError, match="000002.png"):
        list(build_dataset(data, config, training=False, batch_size=1))


# ------------------------------------------------------------------------------ pipeline

BATCH_TABLE = {  # docs/ARCHITECTURE.md, "A training batch": dtype, shape after [B]
    "images": (tf.float32, ("H", "W", 3)),
    "gt_boxes": (tf.float32, ("M", 4)),
    "gt_classes": (tf.int32, ("M",)),
    "gt_masks": (tf.uint8, ("M", "H", "W")),
    "gt_count": (tf.int32, ()),
    "semantic": (tf.int32, ("H", "W")),
    "owner": (tf.int32, ("H", "W")),
    "image_id": (tf.int64, ()),
    "original_size": (tf.int32, (2,)),
    "image_size": (tf.int32, (2,)),
}


def _config(**overrides):
    values = dict(short_side=2 * HEIGHT, max_side=1000, padded_size=(64, 64),
                  scale_jitter=(1.0, 1.0), horizontal_flip=False, max_instances=5,
                  shuffle_buffer=8, num_parallel_calls=2)
    values.update(overrides)
    return DataConfig(**values)


def _first(split, training=False, **overrides):
    data = PanopticDataset.from_split(split)
    batch = next(iter(build_dataset(data, _config(**overrides), training=training,
                                    batch_size=1)))
    return {key: value.numpy()[0] for key, value in batch.items()}


def _upsample(array, factor):
    return np.repeat(np.repeat(array, factor, axis=0), factor, axis=1)


def _bilinear(image, out_h, out_w):
    """Plain numpy bilinear resize with pixel-centre alignment and edge clamping."""
    def weights(in_size, out_size):
        src = np.clip((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0, in_size - 1)
        low = np.floor(src).astype(int)
        return low, np.minimum(low + 1, in_size - 1), src - low

    image = image.astype(np.float64)
    y0, y1, fy = weights(image.shape[0], out_h)
    x0, x1, fx = weights(image.shape[1], out_w)
    rows = image[y0] * (1 - fy)[:, None, None] + image[y1] * fy[:, None, None]
    return rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]


def test_batch_keys_dtypes_and_static_shapes(scene_split):
    config = _config(scale_jitter=(0.8, 1.2), horizontal_flip=True)
    data = PanopticDataset.from_split(scene_split)
    ds = build_dataset(data, config, training=True, batch_size=3)
    sizes = {"H": 64, "W": 64, "M": 5}
    assert set(ds.element_spec) == set(BATCH_TABLE)
    for key, (dtype, shape) in BATCH_TABLE.items():
        expected = [3] + [sizes.get(s, s) for s in shape]
        assert ds.element_spec[key].dtype == dtype, key
        assert ds.element_spec[key].shape.as_list() == expected, key  # static, batch included
    batch = next(iter(ds))
    for key, (dtype, shape) in BATCH_TABLE.items():
        assert batch[key].shape.as_list() == [3] + [sizes.get(s, s) for s in shape]


def test_resize_and_padding_values(scene_split):
    # 12x16 -> shorter side 24: scale 2 exactly; padded to 64x64.
    out = _first(scene_split)
    np.testing.assert_array_equal(out["image_size"], [24, 32])
    np.testing.assert_array_equal(out["original_size"], [HEIGHT, WIDTH])
    assert out["image_id"] == 1 and out["gt_count"] == 2
    semantic, owner = _expected_labels()
    np.testing.assert_array_equal(out["semantic"][:24, :32], _upsample(semantic, 2))
    np.testing.assert_array_equal(out["owner"][:24, :32], _upsample(owner, 2))
    for label in (out["semantic"], out["owner"]):
        assert (label[24:] == IGNORE).all() and (label[:, 32:] == IGNORE).all()
    assert (out["images"][24:] == 0).all() and (out["images"][:, 32:] == 0).all()
    np.testing.assert_array_equal(out["gt_boxes"][:2], 2 * np.array([TIE_BOX, PERSON_BOX]))
    np.testing.assert_array_equal(out["gt_classes"], [2, 1, 0, 0, 0])
    assert (out["gt_boxes"][2:] == 0).all() and (out["gt_masks"][2:] == 0).all()
    np.testing.assert_array_equal(out["gt_masks"][1][:24, :32], _upsample(_rect(PERSON_BOX), 2))
    assert (out["gt_masks"][:, 24:] == 0).all() and (out["gt_masks"][:, :, 32:] == 0).all()
    np.testing.assert_allclose(out["images"][:24, :32], _bilinear(_pixels(seed=1), 24, 32),
                               atol=1e-3)


def test_longer_side_limit_and_shrink_to_fit(scene_split):
    # max_side binds: scale = 40 / 16 = 2.5 -> 30x40; boxes scale by exactly 2.5.
    out = _first(scene_split, short_side=48, max_side=40)
    np.testing.assert_array_equal(out["image_size"], [30, 40])
    np.testing.assert_allclose(out["gt_boxes"][:2], 2.5 * np.array([TIE_BOX, PERSON_BOX]))
    # 36x48 would not fit 32x32: shrink to scale 2 (24x32), never crop.
    out = _first(scene_split, short_side=36, padded_size=(32, 32))
    np.testing.assert_array_equal(out["image_size"], [24, 32])
    np.testing.assert_array_equal(out["gt_boxes"][1], 2 * np.array(PERSON_BOX))


def test_instances_lost_in_downscaling_are_dropped(tmp_path):
    # A 1-pixel tie at an even row and column: halving samples odd rows and columns only.
    anns = _scene_instances()
    anns[0]["segmentation"] = _rle(_rect((4, 6, 5, 7)))
    split = _write_dataset(str(tmp_path), [_scene_image()], anns)
    out = _first(split, short_side=HEIGHT // 2)
    np.testing.assert_array_equal(out["image_size"], [6, 8])
    assert out["gt_count"] == 1
    np.testing.assert_array_equal(out["gt_classes"][:2], [1, 0])
    np.testing.assert_array_equal(out["gt_boxes"][0], np.array(PERSON_BOX) / 2)


def test_truncation_keeps_the_largest_instances(scene_split):
    out = _first(scene_split, max_instances=1)
    assert out["gt_count"] == 1 and out["gt_classes"].tolist() == [1]  # the person
    np.testing.assert_array_equal(out["gt_boxes"][0], 2 * np.array(PERSON_BOX))


def _mask_extents(mask):
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return [rows[0], cols[0], rows[-1] + 1, cols[-1] + 1]


def test_flip_is_consistent(scene_split):
    data = PanopticDataset.from_split(scene_split)
    config = _config(horizontal_flip=True)
    semantic = _upsample(_expected_labels()[0], 2)
    reference = _first(scene_split)  # evaluation: never flipped
    ds = build_dataset(data, config, training=True, batch_size=4, seed=5)
    seen = set()
    for batch in ds.take(4):
        for k in range(4):
            out = {key: value.numpy()[k] for key, value in batch.items()}
            flipped = not np.array_equal(out["semantic"][:24, :32], semantic)
            seen.add(flipped)
            expected = semantic[:, ::-1] if flipped else semantic
            np.testing.assert_array_equal(out["semantic"][:24, :32], expected)
            np.testing.assert_array_equal(out["owner"][:24, :32] == IGNORE, expected > 1)
            image = reference["images"][:24, :32]
            np.testing.assert_allclose(out["images"][:24, :32],
                                       image[:, ::-1] if flipped else image)
            for i in range(out["gt_count"]):
                np.testing.assert_array_equal(out["gt_boxes"][i],
                                              _mask_extents(out["gt_masks"][i]))
    assert seen == {True, False}


def test_scale_jitter_stays_in_range(scene_split):
    low, high = 0.5, 1.5
    data = PanopticDataset.from_split(scene_split)
    ds = build_dataset(data, _config(scale_jitter=(low, high), padded_size=(96, 96)),
                       training=True, batch_size=8, seed=1)
    sizes = np.concatenate([b["image_size"].numpy() for b in ds.take(4)])
    shorter = sizes[:, 0]
    assert shorter.min() >= np.floor(2 * HEIGHT * low) and shorter.max() <= np.ceil(
        2 * HEIGHT * high)
    assert len(set(shorter.tolist())) > 5  # really random
    np.testing.assert_allclose(sizes[:, 1] / sizes[:, 0], WIDTH / HEIGHT, atol=0.1)


def _stream(split, seed, batches=3):
    data = PanopticDataset.from_split(split)
    config = _config(scale_jitter=(0.7, 1.3), horizontal_flip=True)
    ds = build_dataset(data, config, training=True, batch_size=2, seed=seed)
    return [{k: v.numpy() for k, v in b.items()} for b in ds.take(batches)]


def test_determinism_with_a_seed(tmp_path):
    split = _write_dataset(str(tmp_path), [_scene_image(i) for i in range(1, 5)])
    first, again, other = _stream(split, 3), _stream(split, 3), _stream(split, 4)
    for a, b in zip(first, again):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert any(not np.array_equal(a[key], b[key])
               for a, b in zip(first, other) for key in ("image_id", "image_size", "images"))


def test_sharding_by_input_context(tmp_path):
    split = _write_dataset(str(tmp_path), [_scene_image(i) for i in range(1, 6)])
    data = PanopticDataset.from_split(split)
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2,
                                             input_pipeline_id=pipeline_id,
                                             num_replicas_in_sync=2)
        ds = build_dataset(data, _config(), training=False, batch_size=4,
                           input_context=context)
        batches = list(ds)
        assert all(b["images"].shape[0] <= 2 for b in batches)  # per-replica batch: 4 / 2
        seen.append(sorted(i for b in batches for i in b["image_id"].numpy().tolist()))
    assert seen == [[1, 3, 5], [2, 4]]


def test_training_repeats_and_drops_the_remainder(tmp_path):
    split = _write_dataset(str(tmp_path), [_scene_image(i) for i in range(1, 4)])
    data = PanopticDataset.from_split(split)
    ds = build_dataset(data, _config(), training=True, batch_size=2, seed=0)
    epochs = np.concatenate([b["image_id"].numpy() for b in ds.take(6)]).reshape(4, 3)
    for epoch in epochs:  # each pass over the data is a permutation ...
        assert sorted(epoch.tolist()) == [1, 2, 3]
    assert len({tuple(epoch) for epoch in epochs}) > 1  # ... reshuffled each time
    once = build_dataset(data, _config(), training=True, batch_size=2, seed=0, repeat=False)
    assert [b["image_id"].shape[0] for b in once] == [2]


# ------------------------------------------------------------------------------ real data

def test_synthetic_dataset_through_the_pipeline(synthetic_dir):
    data = PanopticDataset.from_split(synthetic_split(synthetic_dir, "train"))
    assert data.uses_instances_json
    config = DataConfig(short_side=96, max_side=128, padded_size=(128, 128),
                        scale_jitter=(0.8, 1.2), max_instances=16)
    batch = next(iter(build_dataset(data, config, training=True, batch_size=4)))
    assert batch["images"].shape == (4, 128, 128, 3)
    counts = batch["gt_count"].numpy()
    assert counts.min() > 0
    for k in range(4):
        classes = batch["gt_classes"].numpy()[k]
        assert (classes[:counts[k]] >= 1).all() and (classes[counts[k]:] == 0).all()
        owner = batch["owner"].numpy()[k]
        assert set(np.unique(owner)) <= set(range(data.categories.num_things)) | {IGNORE}
    # The instances JSON's masks are whole: somewhere two instances overlap (person + tie).
    overlaps = [b["gt_masks"].numpy().sum(axis=1).max()
                for b in build_dataset(data, config, training=False, batch_size=4)]
    assert max(overlaps) > 1


def test_real_coco_sample(coco_sample_dir):
    """Both instance-mask paths agree on real COCO (the instances JSON was converted from the
    panoptic annotations), and labels match a plain per-segment reference."""
    paths = dict(image_dir=os.path.join(coco_sample_dir, "images"),
                 panoptic_json=os.path.join(coco_sample_dir, "panoptic.json"),
                 panoptic_dir=os.path.join(coco_sample_dir, "panoptic"))
    from_json = PanopticDataset(**paths, instances_json=os.path.join(
        coco_sample_dir, "instances_from_panoptic.json"))
    from_png = PanopticDataset(**paths)
    assert from_json.categories.num_things == 80 and from_json.categories.num_stuff == 53
    with open(paths["panoptic_json"]) as f:
        annotations = {a["image_id"]: a for a in json.load(f)["annotations"]}
    categories = from_json.categories
    for index in range(len(from_json)):
        a, b = from_json.load_example(index), from_png.load_example(index)
        annotation = annotations[int(a["image_id"])]
        with Image.open(os.path.join(paths["panoptic_dir"], annotation["file_name"])) as png:
            ids = rgb_to_id(np.asarray(png))
        semantic = np.full(ids.shape, IGNORE)
        owner = np.full(ids.shape, IGNORE)
        things = [s for s in annotation["segments_info"]
                  if not s["iscrowd"] and categories.is_thing(s["category_id"])]
        for s in annotation["segments_info"]:
            if not s["iscrowd"]:
                semantic[ids == s["id"]] = categories.semantic_index(s["category_id"])
        for s in things:
            owner[ids == s["id"]] = categories.thing_index(s["category_id"])
        for example in (a, b):
            np.testing.assert_array_equal(example["semantic"], semantic)
            np.testing.assert_array_equal(example["owner"], owner)
            assert example["image"].shape == ids.shape + (3,)
        np.testing.assert_array_equal(a["masks"], b["masks"])
        np.testing.assert_array_equal(a["classes"], b["classes"])
        x, y, w, h = np.array([s["bbox"] for s in things], np.float32).T
        np.testing.assert_array_equal(a["boxes"], np.stack([y, x, y + h, x + w], axis=1))
    config = DataConfig(short_side=256, max_side=400, padded_size=(288, 416),
                        max_instances=32)
    batches = list(build_dataset(from_json, config, training=False, batch_size=2))
    assert len(batches) == 1
    np.testing.assert_array_equal(batches[0]["image_size"].numpy(), [[256, 384], [225, 400]])


# ------------------------------------------------------------------------------ resuming

def _counting_loads(data):
    """Record the index of every `load_example` call on `data` (from any thread)."""
    calls = []
    load = data.load_example

    def counted(index, *args):
        calls.append(index)
        return load(index, *args)

    data.load_example = counted
    return calls


def test_resume_skips_without_decoding(tmp_path):
    split = _write_dataset(str(tmp_path), [_scene_image(i) for i in range(1, 6)])
    data = PanopticDataset.from_split(split)
    calls = _counting_loads(data)
    resumed = list(build_dataset(data, _config(), training=False, batch_size=1, start_batch=3))
    assert [b["image_id"].numpy().tolist() for b in resumed] == [[4], [5]]
    assert sorted(calls) == [3, 4]
    # Shuffled, one pass: the two skipped batches of 2 are never decoded.
    calls.clear()
    fresh = list(build_dataset(data, _config(), training=True, batch_size=2, seed=1,
                               repeat=False))
    assert len(calls) == 5
    calls.clear()
    resumed = list(build_dataset(data, _config(), training=True, batch_size=2, seed=1,
                                 repeat=False, start_batch=1))
    assert len(calls) == 3
    np.testing.assert_array_equal(resumed[0]["image_id"], fresh[1]["image_id"])
    # Ten epochs in: only what the resumed stream reads ahead is decoded.
    calls.clear()
    config = _config(num_parallel_calls=1)
    next(iter(build_dataset(data, config, training=True, batch_size=1, seed=1,
                            start_batch=50)))
    assert 1 <= len(calls) < 50, calls


def test_resume_with_a_seed_only(scene_split):
    data = PanopticDataset.from_split(scene_split)
    with pytest.raises(ValueError, match="needs a fixed seed"):
        build_dataset(data, _config(), training=True, batch_size=1, seed=None, start_batch=2)
    with pytest.raises(ValueError, match=">= 0"):
        build_dataset(data, _config(), training=True, batch_size=1, start_batch=-1)


def test_shuffle_order_ignores_the_global_seed(tmp_path):
    # The order depends on `seed` only (a resumed run may set another global seed).
    split = _write_dataset(str(tmp_path), [_scene_image(i) for i in range(1, 6)])
    data = PanopticDataset.from_split(split)
    orders = []
    try:
        for global_seed in (0, 1234):
            tf.random.set_seed(global_seed)
            ds = build_dataset(data, _config(), training=True, batch_size=5, seed=2)
            orders.append([b["image_id"].numpy().tolist() for b in ds.take(3)])
    finally:
        tf.random.set_seed(None)
    assert orders[0] == orders[1]
    assert len({tuple(epoch) for epoch in orders[0]}) > 1


def test_truncation_ties_keep_the_earlier_instance(tmp_path):
    # Three instances with areas 6, 4, 6 (file order): keeping 2 keeps the two of area 6,
    # keeping 1 keeps the first of them; order as in the file.
    boxes = [(0, 0, 2, 3), (5, 0, 7, 2), (8, 10, 10, 13)]
    anns = [{"image_id": 1, "category_id": cat, "iscrowd": 0, "segmentation": _rle(_rect(box))}
            for cat, box in zip((TIE, PERSON, PERSON), boxes)]
    split = _write_dataset(str(tmp_path), [_scene_image()], anns)
    areas = np.array([_rect(b).sum() for b in boxes])
    for keep in (1, 2, 3):
        expected = np.sort(np.argsort(-areas, kind="stable")[:keep])  # numpy reference
        out = _first(split, max_instances=keep)
        assert out["gt_count"] == keep
        np.testing.assert_array_equal(out["gt_boxes"][:keep], 2 * np.array(boxes)[expected])


def test_resolve_split_reuses_an_existing_synthetic_dataset(tmp_path):
    from oanet_tf.config import DataConfig
    from oanet_tf.data.splits import resolve_split
    from oanet_tf.data.synthetic import make_synthetic_dataset

    root = str(tmp_path / "synthetic")
    make_synthetic_dataset(root, 2, 1, 0, (32, 32), progress=False)
    config = DataConfig(synthetic_dir=root, synthetic_train=2, synthetic_val=1)
    stamp = os.stat(os.path.join(root, "train", "panoptic.json")).st_mtime_ns
    split = resolve_split(config, "train")
    assert split.panoptic_json == os.path.join(root, "train", "panoptic.json")
    assert os.stat(split.panoptic_json).st_mtime_ns == stamp  # not written again
