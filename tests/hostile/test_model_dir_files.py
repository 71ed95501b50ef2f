"""Issue 17, case 2: a `train` that is refused leaves the model dir's files as they were (it
used to rewrite config.yaml and categories.json before finding that the dir holds another
model); each start records its environment in environment.json."""

import json
import os

import pytest
import tensorflow as tf

from oanet_tf.environment import ENVIRONMENT_FILE, cpu_description
from oanet_tf.errors import OANetError
from oanet_tf.fileio import write_json
from oanet_tf.inference.trained_model import CATEGORIES_FILE, CONFIG_FILE
from oanet_tf.training.trainer import train
from tests.hostile.conftest import SCENE_CATEGORIES, split_overrides, write_scene
from tests.tiny_model import tiny_config

OTHER_CATEGORIES = [{"id": 7, "name": "cat", "isthing": 1},
                    {"id": 8, "name": "floor", "isthing": 0}]
CONFIG_TEXT = "# the config of the model this dir holds\n"


def _config(tmp_path):
    split = write_scene(tmp_path / "data")
    return tiny_config("data.buckets=[]", "data.short_side=32", "data.max_side=32",
                       "train.batch_size=2", "train.steps_per_epoch=1",
                       *split_overrides(split, "train"), *split_overrides(split, "val"))


def _files(model_dir):
    return {name: open(os.path.join(model_dir, name), "rb").read()
            for name in (CONFIG_FILE, CATEGORIES_FILE)}


def test_a_model_of_other_categories_is_left_alone(tmp_path):
    model_dir = tmp_path / "model"
    os.makedirs(model_dir)
    (model_dir / CONFIG_FILE).write_text(CONFIG_TEXT)
    write_json(str(model_dir / CATEGORIES_FILE), OTHER_CATEGORIES)
    before = _files(model_dir)
    with pytest.raises(OANetError, match="holds a model of other categories"):
        train(_config(tmp_path), str(model_dir), verbose=0)
    assert _files(model_dir) == before


def test_a_backup_that_cannot_be_loaded_leaves_the_files(tmp_path):
    model_dir = tmp_path / "model"
    os.makedirs(model_dir / "backup")
    (model_dir / CONFIG_FILE).write_text(CONFIG_TEXT)
    write_json(str(model_dir / CATEGORIES_FILE), list(SCENE_CATEGORIES.categories))
    (model_dir / "backup" / "step-000000001.weights.h5").write_bytes(b"not weights")
    write_json(str(model_dir / "backup" / "state.json"),
               {"batches": 1, "weights": "step-000000001.weights.h5"})
    before = _files(model_dir)
    with pytest.raises(OANetError, match="cannot be loaded"):
        train(_config(tmp_path), str(model_dir), verbose=0)
    assert _files(model_dir) == before


def test_each_start_of_train_records_its_environment(tmp_path):
    """A fresh run and its resume (here with nothing left to train) each add an entry: a
    model trained partly on one machine and partly on another shows both."""
    model_dir, config = tmp_path / "model", _config(tmp_path)
    for _ in range(2):
        train(config, str(model_dir), verbose=0)
    starts = json.loads((model_dir / ENVIRONMENT_FILE).read_text())["starts"]
    assert [start["command"] for start in starts] == ["train", "train"]
    assert starts[0]["tensorflow"] == tf.__version__ and starts[1]["cpu"] == cpu_description()


def test_a_foreign_environment_file_stops_train_before_it_writes(tmp_path):
    model_dir = tmp_path / "model"
    os.makedirs(model_dir)
    (model_dir / CONFIG_FILE).write_text(CONFIG_TEXT)
    write_json(str(model_dir / CATEGORIES_FILE), list(SCENE_CATEGORIES.categories))
    (model_dir / ENVIRONMENT_FILE).write_text("not JSON")
    before = _files(model_dir)
    with pytest.raises(OANetError, match=f"{ENVIRONMENT_FILE}: not an environment file"):
        train(_config(tmp_path), str(model_dir), verbose=0)
    assert _files(model_dir) == before
    assert (model_dir / ENVIRONMENT_FILE).read_text() == "not JSON"
