"""Issue 17, case 10: the file names of a dataset or prediction JSON stay in their folders
unless the split's allow_outside_paths is set."""

import dataclasses
import os
import shutil

import pytest

from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.errors import DatasetError
from oanet_tf.evaluation.pq import evaluate_files
from tests.evaluation.panoptic_cases import edit_json
from tests.hostile.conftest import write_scene


def _outside(tmp_path, split, how):
    """Point image 1's file_name out of the image folder, `how`: '..', absolute, symlink."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(os.path.join(split.image_dir, "000001.png"), outside / "000001.png")
    name = {"dotdot": "../../elsewhere/000001.png", "absolute": str(outside / "000001.png"),
            "symlink": "link/000001.png"}[how]
    if how == "symlink":
        os.symlink(outside, os.path.join(split.image_dir, "link"))
    edit_json(split.panoptic_json, lambda data: data["images"][0].update(file_name=name))
    return name


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_dataset_file_names_must_stay_in_their_folder(tmp_path, how):
    split = write_scene(tmp_path / "data", count=2)
    name = _outside(tmp_path, split, how)
    with pytest.raises(DatasetError, match="leads outside") as info:
        PanopticDataset.from_split(split)
    assert repr(name) in str(info.value)
    allowed = PanopticDataset.from_split(dataclasses.replace(split, allow_outside_paths=True))
    assert len(allowed) == 2


def test_prediction_file_names_must_stay_in_their_folder(tmp_path):
    split = write_scene(tmp_path / "gt", count=1)
    pred_json = str(tmp_path / "pred.json")
    shutil.copy(split.panoptic_json, pred_json)
    edit_json(pred_json, lambda data: data["annotations"][0].update(
        file_name=os.path.join(split.panoptic_dir, "000001.png")))
    with pytest.raises(DatasetError, match="leads outside"):
        evaluate_files(split.panoptic_json, split.panoptic_dir, pred_json,
                       str(tmp_path / "pred"), workers=1, progress=False)
