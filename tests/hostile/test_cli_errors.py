"""Issue 17, case 8: every user error is one line on stderr naming the item and the problem,
exit code 2; --debug adds the traceback."""

import os

import pytest

from oanet_tf.__main__ import main
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.errors import DatasetError
from tests.evaluation.panoptic_cases import edit_json
from tests.hostile.conftest import write_scene
from tests.tiny_model import SYNTHETIC_CONFIG


def _errors(capsys):
    """The lines of stderr besides progress bars."""
    return [line for line in capsys.readouterr().err.splitlines()
            if line.strip() and "%|" not in line]


def test_a_string_image_id_is_refused(tmp_path):
    split = write_scene(tmp_path, count=2)

    def stringify(data):
        data["images"][0]["id"] = "1"
        data["annotations"][0]["image_id"] = "1"

    edit_json(split.panoptic_json, stringify)
    with pytest.raises(DatasetError, match="'1' .* is not an integer"):
        PanopticDataset.from_split(split)


def test_an_unwritable_output_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    code = main(["make-synthetic", "--out", str(blocker / "sub"), "--train", "1", "--val", "0"])
    errors = _errors(capsys)
    assert code == 2 and len(errors) == 1
    assert errors[0].startswith("error: ") and str(blocker) in errors[0]


def test_debug_adds_the_traceback(tmp_path, capsys):
    args = ["train", "--config", SYNTHETIC_CONFIG, "--model-dir", str(tmp_path / "run"),
            "--set", "train.batch_size=0"]
    assert main(args) == 2
    assert _errors(capsys) == ["error: train.batch_size: must be positive, got 0"]
    assert main([*args, "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith("must be positive, got 0")


TRAINED_SMALL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "fixtures", "trained_small")


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_missing_synthetic_data_is_one_line_naming_the_command(tmp_path, capsys, command):
    missing = str(tmp_path / "synthetic")
    settings = ["--set", f"data.synthetic_dir={missing}", "--set", "data.synthetic_train=7"]
    if command == "train":
        args = ["train", "--config", SYNTHETIC_CONFIG, "--model-dir", str(tmp_path / "run")]
    else:
        args = ["evaluate", "--model-dir", TRAINED_SMALL, "--out", str(tmp_path / "eval")]
    assert main([*args, *settings]) == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and missing in errors[0]
    assert errors[0].endswith(f"python -m oanet_tf make-synthetic --out {missing} --train 7 "
                              f"--val 50 --seed 0 --size 128x128")
    assert os.listdir(tmp_path) == []  # neither the data nor any output was written
