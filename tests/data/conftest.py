"""Fixtures of the data tests: the scene written as a one-image split, as five images with
their TFRecords, and images of mixed sizes with their TFRecords."""

import pytest

from tests.data.scenes import (_convert, _mixed_split, _scene_image, _scene_instances,
                               _write_dataset)


@pytest.fixture
def scene_split(tmp_path):
    return _write_dataset(str(tmp_path), [_scene_image()], _scene_instances())


@pytest.fixture
def five_images(tmp_path):
    """A 5-image split (overlapping masks) and its records in 2 shards (2 + 3 images)."""
    split = _write_dataset(str(tmp_path / "coco"), [_scene_image(i) for i in range(1, 6)],
                           [a for i in range(1, 6) for a in _scene_instances(i)])
    return _convert(split, tmp_path / "records", 2)


@pytest.fixture
def mixed_images(tmp_path):
    """The MIXED_IMAGES split and its records in 3 shards (2 + 3 + 3 images)."""
    return _convert(_mixed_split(str(tmp_path / "coco")), tmp_path / "records", 3)
