"""Issue 17, case 8: every user error is one line on stderr naming the item and the problem,
exit code 2; --debug adds the traceback."""

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
