"""Issue 27, item 7: a temporary name fits wherever its final name fits (NAME_MAX, 255 bytes
here), so predict writes the outputs of an input of any legal name, or refuses before running
an input whose outputs could not be named."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from oanet_tf.__main__ import main
from oanet_tf.cli.predict import OVERLAY_DIR, PANOPTIC_DIR, PREDICTIONS_JSON
from oanet_tf.fileio import (STAGING_PREFIX, atomic_open, name_max, remove_leftovers,
                             temporary_name)

NAME_MAX = 255


def _image(folder, name):
    path = os.path.join(folder, name)
    Image.fromarray(np.full((12, 16, 3), 90, np.uint8)).save(path, format="PNG")
    return path


def _errors(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def test_the_file_system_limit_is_read():
    assert name_max("/tmp") == NAME_MAX
    assert name_max("/tmp/no/such/folder") == NAME_MAX  # from the nearest existing parent


def test_predict_writes_the_outputs_of_a_244_byte_name(tmp_path, scene_model_dir, capsys):
    """Its PNG is 244 bytes and its overlay 252: both legal; `.tmp-<pid>-<token>-` before the
    whole name (26 bytes or so) made the PNG's temporary name too long."""
    name = "x" * 240 + ".png"
    code = main(["predict", _image(tmp_path, name), "--model-dir", scene_model_dir[0],
                 "--out", str(tmp_path / "out")])
    assert code == 0, _errors(capsys)
    assert os.listdir(tmp_path / "out" / PANOPTIC_DIR) == [name]
    assert os.listdir(tmp_path / "out" / OVERLAY_DIR) == ["x" * 240 + "_overlay.png"]
    assert sorted(os.listdir(tmp_path / "out")) == sorted([PANOPTIC_DIR, OVERLAY_DIR,
                                                           PREDICTIONS_JSON])


def test_a_255_byte_name_is_written_or_refused_before_running(tmp_path, scene_model_dir,
                                                                  capsys):
    """Its PNG takes the whole 255 bytes; its overlay's name (263 bytes) cannot exist, which
    is said before anything runs; without overlays it is predicted."""
    name = "y" * 251 + ".png"
    image = _image(tmp_path, name)
    out = tmp_path / "out"
    code = main(["predict", image, "--model-dir", scene_model_dir[0], "--out", str(out)])
    errors = _errors(capsys)
    assert code == 2 and len(errors) == 1
    assert image in errors[0] and "263 bytes, over the 255" in errors[0]
    assert "--no-overlays" in errors[0] and not out.exists()
    code = main(["predict", image, "--model-dir", scene_model_dir[0], "--out", str(out),
                 "--no-overlays"])
    assert code == 0, _errors(capsys)
    assert os.listdir(out / PANOPTIC_DIR) == [name]


@pytest.mark.parametrize("name", ["z" * 251 + ".png", "é" * 120 + ".weights.h5",
                                  "😀" * 61 + ".json"])
def test_a_temporary_name_keeps_the_end_of_a_long_name_in_whole_characters(tmp_path, name):
    temporary = temporary_name(STAGING_PREFIX, name, str(tmp_path))
    assert len(os.fsencode(temporary)) <= NAME_MAX
    assert temporary.startswith(f"{STAGING_PREFIX}{os.getpid()}-")
    kept = temporary.split("-", 3)[3]
    assert name.endswith(kept) and len(kept) >= len(os.path.splitext(name)[1])
    with atomic_open(str(tmp_path / name), "w") as f:  # the final name: 255 bytes or less
        f.write("complete")
    assert (tmp_path / name).read_text() == "complete"
    assert os.listdir(tmp_path) == [name]


def test_leftovers_of_a_long_name_are_found_for_their_target(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(done.stdout)
    name, other = "w" * 250 + ".json", "v" * 250 + ".json"
    head = f"{STAGING_PREFIX}{dead}-{'0' * 12}-"
    mine = head + name[len(os.fsencode(head)) + len(name) - NAME_MAX:]
    theirs = head + other[len(os.fsencode(head)) + len(other) - NAME_MAX:]
    for entry in (mine, theirs):
        (tmp_path / entry).write_text("half written")
    assert remove_leftovers(str(tmp_path), name) == [str(tmp_path / mine)]
    assert os.listdir(tmp_path) == [theirs]
