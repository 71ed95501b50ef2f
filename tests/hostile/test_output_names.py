"""Issue 17, case 6: each input gets its own output file; a collision is refused, never
written over; two 'images' entries with one id are refused."""

import os

import numpy as np
import pytest

from oanet_tf.__main__ import main
from oanet_tf.cli.predict import list_images
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.errors import DatasetError, OANetError
from oanet_tf.inference.writer import PanopticWriter
from tests.evaluation.panoptic_cases import edit_json
from tests.hostile.conftest import SCENE_CATEGORIES, write_scene


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"pixels")
    return str(path)


@pytest.mark.parametrize("names", [("a/x.jpg", "b/x.jpg"), ("x.jpg", "x.png")])
def test_predict_refuses_two_inputs_of_one_name_before_running(tmp_path, capsys, names):
    files = [_touch(tmp_path / name) for name in names]
    code = main(["predict", *files, "--model-dir", str(tmp_path / "no_model"),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "would both be written as x.png" in err[0] and all(f in err[0] for f in files)
    assert not (tmp_path / "out").exists()


def test_predict_lists_the_files_of_a_folder_not_its_folders(tmp_path):
    image = _touch(tmp_path / "a.jpg")
    os.makedirs(tmp_path / "b.jpg")  # a folder with an image's name
    assert list_images([str(tmp_path)]) == [image]


def test_the_writer_keeps_subfolders_and_refuses_a_second_input_for_a_name(tmp_path):
    writer = PanopticWriter(str(tmp_path / "p.json"), str(tmp_path / "png"), SCENE_CATEGORIES)
    panoptic = np.zeros((4, 5), np.int32)
    writer.add(1, "a/x.jpg", panoptic, [], png_name="a/x.png")
    writer.add(2, "b/x.jpg", panoptic, [], png_name="b/x.png")
    assert sorted(os.listdir(tmp_path / "png")) == ["a", "b"]
    with pytest.raises(OANetError, match="would both be written"):
        writer.add(3, "c/x.jpg", panoptic, [], png_name="a/x.png")
    with pytest.raises(OANetError, match="would both be written"):
        writer.add(4, "x.jpg", panoptic, [])
        writer.add(5, "x.png", panoptic, [])


def test_evaluation_names_its_pngs_after_the_ground_truth_pngs(tmp_path):
    """Images a/x and b/x of one dataset: each prediction goes to its own PNG."""
    split = write_scene(tmp_path, count=2)
    for folder, image_id in (("a", 1), ("b", 2)):
        for root, ext in ((split.image_dir, "png"), (split.panoptic_dir, "png")):
            os.makedirs(os.path.join(root, folder), exist_ok=True)
            os.rename(os.path.join(root, f"{image_id:06d}.{ext}"),
                      os.path.join(root, folder, f"x.{ext}"))

    def move(data):
        for entry, folder in zip(data["images"], "ab"):
            entry["file_name"] = f"{folder}/x.png"
        for ann, folder in zip(data["annotations"], "ab"):
            ann["file_name"] = f"{folder}/x.png"

    edit_json(split.panoptic_json, move)
    records = PanopticDataset.from_split(split).records
    assert [r.png_name for r in records] == ["a/x.png", "b/x.png"]


def test_two_image_entries_with_one_id_are_refused(tmp_path):
    split = write_scene(tmp_path, count=2)
    edit_json(split.panoptic_json, lambda data: data["images"][1].update(id=1))
    with pytest.raises(DatasetError, match="two 'images' entries have id 1"):
        PanopticDataset.from_split(split)
