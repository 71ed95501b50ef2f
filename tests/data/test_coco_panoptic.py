"""oanet_tf.data.coco_panoptic: the COCO panoptic reader on the hand-made scene (labels, void,
crowd, both instance-mask sources), its errors naming the file, skipping bad images, and
real COCO files against a plain per-segment reference."""

import json
import logging
import os

import numpy as np
import pytest
from PIL import Image

from oanet_tf.config import DataConfig
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.data.panoptic_format import rgb_to_id
from oanet_tf.data.pipeline import build_dataset
from oanet_tf.errors import DatasetError
from tests.data.scenes import (GRASS, HEIGHT, IGNORE, PERSON, PERSON_BOX, SEG_GRASS, SEG_SKY,
                               SEG_TIE, SKY, TIE, TIE_BOX, WIDTH, _expected_labels, _pixels, _rect,
                               _rle, _scene_image, _scene_instances, _three_image_split,
                               _write_dataset)


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


def test_image_sizes_from_the_json_else_the_header(tmp_path):
    # Image 2 is stored turned a quarter (EXIF orientation 6): its header says 16x12, upright
    # it is 12x16. Image 3's JSON entry claims 30x40: the JSON is taken as it is.
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(_pixels(), k=1)))
    split = _write_dataset(str(tmp_path), [_scene_image(1),
                                           _scene_image(2, pixels=stored, ext="jpg", exif=exif),
                                           _scene_image(3)])
    with open(split.panoptic_json) as f:
        data = json.load(f)
    for image in data["images"]:
        if image["id"] == 3:
            image.update(height=30, width=40)
        else:
            del image["height"], image["width"]
    with open(split.panoptic_json, "w") as f:
        json.dump(data, f)
    dataset = PanopticDataset.from_split(split)
    assert dataset.image_sizes.dtype == np.int32
    np.testing.assert_array_equal(dataset.image_sizes, [[HEIGHT, WIDTH], [HEIGHT, WIDTH],
                                                        [30, 40]])
    assert dataset.load_example(1)["image"].shape[:2] == (HEIGHT, WIDTH)


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


@pytest.mark.parametrize("row, key, value, expected", [
    (1, "image_id", 5, "references image 5"), (0, "category_id", 3, "category id 3")],
    ids=["unknown_image", "unknown_category"])
def test_instances_reference_unknown_ids(tmp_path, row, key, value, expected):
    anns = _scene_instances()
    anns[row][key] = value
    split = _write_dataset(str(tmp_path), [_scene_image()], anns)
    message = _raises_naming(split.instances_json, lambda: PanopticDataset.from_split(split))
    assert expected in message


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
    np.testing.assert_array_equal(  # the JSON's sizes, without decoding
        from_json.image_sizes, [from_json.load_example(i)["original_size"]
                                for i in range(len(from_json))])
    config = DataConfig(short_side=256, max_side=400, max_instances=32)
    batches = list(build_dataset(from_json, config, training=False, batch_size=2))
    assert len(batches) == 1
    np.testing.assert_array_equal(batches[0]["image_size"].numpy(), [[256, 384], [225, 400]])
    assert batches[0]["images"].shape == (2, 256, 416, 3)  # 400 rounded up to 32
