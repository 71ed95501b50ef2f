"""Issue 17, cases 1 and 8: an image that fails only when decoded (inside tf.data) stops the
run with one line naming the file, exit code 2, and the process exits; with
data.skip_bad_images it is skipped. A traceback appears only with --debug."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from oanet_tf import __main__ as cli
from oanet_tf.config import load_config, save_config
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.data.panoptic_format import read_id_png
from oanet_tf.data import pipeline
from oanet_tf.data.pipeline import build_dataset
from oanet_tf.errors import DatasetError
from oanet_tf.inference.trained_model import CONFIG_FILE
from tests.evaluation.panoptic_cases import edit_json
from tests.hostile.conftest import split_overrides, write_scene
from tests.tiny_model import SYNTHETIC_CONFIG

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXIT_TIMEOUT_S = 180  # a hang is what this catches; a healthy run exits well before
MISSING_SEGMENT = "not in segments_info"


def _drop_first_segment(split, image_index=0):
    """The PNG of image `image_index` then holds a segment id its JSON entry lacks: found
    only when decoding."""
    edit_json(split.panoptic_json, lambda data: data["annotations"][image_index].update(
        segments_info=data["annotations"][image_index]["segments_info"][1:]))
    return os.path.join(split.panoptic_dir, f"{image_index + 1:06d}.png")


def _config(*overrides):
    return load_config(SYNTHETIC_CONFIG, ["data.buckets=[]", "data.short_side=32",
                                          "data.max_side=32", *overrides])


def test_evaluate_with_an_undecodable_image_exits_with_one_line(tmp_path, scene_model_dir):
    """The reported hang: evaluate stops at the bad image, says which and why, exits 2."""
    split = write_scene(tmp_path / "data")
    bad_png = _drop_first_segment(split)
    model_dir, _ = scene_model_dir
    config_path = tmp_path / CONFIG_FILE
    save_config(load_config(os.path.join(model_dir, CONFIG_FILE), split_overrides(split)),
                str(config_path))
    env = dict(os.environ, PYTHONPATH=REPO)
    done = subprocess.run(
        [sys.executable, "-m", "oanet_tf", "evaluate", "--model-dir", model_dir,
         "--config", str(config_path), "--out", str(tmp_path / "eval")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=EXIT_TIMEOUT_S)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert len(errors) == 1 and bad_png in errors[0] and MISSING_SEGMENT in errors[0]


def test_the_pipeline_stops_with_the_dataset_error(tmp_path):
    split = write_scene(tmp_path)
    bad_png = _drop_first_segment(split, image_index=2)
    dataset = PanopticDataset.from_split(split)
    data = build_dataset(dataset, _config().data, training=False, batch_size=1, repeat=False)
    with pytest.raises(DatasetError, match=MISSING_SEGMENT) as info:
        for _ in pipeline.batches(data):
            pass
    assert str(info.value).startswith(bad_png)


def test_training_sees_an_error_the_command_line_prints_as_one_line(tmp_path):
    """model.fit iterates the dataset itself: what reaches the CLI is TensorFlow's error,
    which becomes the dataset's message and exit code 2."""
    split = write_scene(tmp_path)
    bad_png = _drop_first_segment(split, image_index=1)
    data = build_dataset(PanopticDataset.from_split(split), _config().data, training=True,
                         batch_size=2, repeat=False)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        for _ in data:
            pass
    code, message = cli.describe_error(info.value)
    assert code == 2 and message.startswith(bad_png) and MISSING_SEGMENT in message


def test_skip_bad_images_skips_an_image_that_fails_when_decoded(tmp_path):
    split = write_scene(tmp_path)
    bad_png = _drop_first_segment(split, image_index=1)
    dataset = PanopticDataset.from_split(split, skip_bad_images=True)
    data = build_dataset(dataset, _config().data, training=False, batch_size=1, repeat=False)
    ids = [int(batch["image_id"][0]) for batch in pipeline.batches(data)]
    assert ids == [1, 3, 4]
    assert [file for file, _ in dataset.bad_images] == [os.path.join(split.image_dir,
                                                                     "000002.png")]
    assert bad_png in dataset.bad_images[0][1]


def test_a_decompression_bomb_png_is_a_dataset_error(tmp_path, monkeypatch):
    path = str(tmp_path / "big.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64)  # PIL refuses above twice this
    with pytest.raises(DatasetError, match="cannot read the panoptic PNG"):
        read_id_png(path, "panoptic")
