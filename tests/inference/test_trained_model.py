"""oanet_tf.inference.trained_model: reading back what `train` wrote into a model dir (config,
categories, weights), and the one-line errors for a dir that is not one. Loading the weights
into a model is tested with the export (tests/export/test_saved_model.py)."""

import json
import os
import re

import pytest
import yaml

from oanet_tf.config import FLAT_MODEL_KEYS, Config, load_config, save_config
from oanet_tf.errors import ConfigError, OANetError
from oanet_tf.inference.trained_model import (BEST_WEIGHTS, CATEGORIES_FILE, CONFIG_FILE,
                                              LAST_WEIGHTS, load_config_of, read_categories,
                                              weights_path)

CATEGORIES = [{"id": 40, "name": "sky", "isthing": 0}, {"id": 7, "name": "person", "isthing": 1},
              {"id": 12, "name": "tie", "isthing": 1}]


def test_weights_aliases_and_paths(tmp_path):
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "checkpoints"))
    for name in ("last", "best"):
        open(os.path.join(root, "checkpoints", f"{name}.weights.h5"), "wb").close()
    other = str(tmp_path / "other.weights.h5")
    open(other, "wb").close()
    assert LAST_WEIGHTS == "checkpoints/last.weights.h5"
    assert BEST_WEIGHTS == "checkpoints/best.weights.h5"
    assert weights_path(root) == os.path.join(root, "checkpoints/last.weights.h5")
    assert weights_path(root, "best") == os.path.join(root, "checkpoints/best.weights.h5")
    assert weights_path(root, other) == other
    os.remove(os.path.join(root, BEST_WEIGHTS))
    missing = os.path.join(root, BEST_WEIGHTS)
    message = re.escape(f"weights file not found: {missing} (--weights best)")
    with pytest.raises(OANetError, match=message):
        weights_path(root, "best")
    with pytest.raises(OANetError, match="--weights nowhere.h5"):
        weights_path(root, "nowhere.h5")


def test_read_categories(tmp_path):
    path = str(tmp_path / CATEGORIES_FILE)
    with open(path, "w") as f:
        json.dump(CATEGORIES, f)
    categories = read_categories(path)
    assert categories.thing_ids == [7, 12] and categories.stuff_ids == [40]
    assert (categories.num_things, categories.num_stuff) == (2, 1)


@pytest.mark.parametrize("content, message", [
    (None, "categories.json not found: --model-dir must be a directory written by"),
    ("{not json", "categories.json: not a list of categories"),
    ('{"id": 1}', "categories.json: not a list of categories"),
    ('[{"name": "sky"}]', "categories.json: not a list of categories"),
], ids=["missing", "not_json", "not_a_list", "no_ids"])
def test_read_categories_errors_name_the_file(tmp_path, content, message):
    path = str(tmp_path / CATEGORIES_FILE)
    if content is not None:
        with open(path, "w") as f:
            f.write(content)
    with pytest.raises(OANetError, match=message) as info:
        read_categories(path)
    assert path in str(info.value)


def test_load_config_of_reads_the_saved_config_with_overrides(tmp_path):
    config = load_config(None, ["train.batch_size=6", "data.short_side=96"])
    save_config(config, str(tmp_path / CONFIG_FILE))
    loaded = load_config_of(str(tmp_path))
    assert isinstance(loaded, Config) and loaded.to_dict() == config.to_dict()
    changed = load_config_of(str(tmp_path), overrides=("train.batch_size=3",))
    assert changed.train.batch_size == 3 and changed.data.short_side == 96
    # An explicit config wins over the model dir's.
    elsewhere = str(tmp_path / "elsewhere.yaml")
    save_config(load_config(None, ["train.batch_size=5"]), elsewhere)
    assert load_config_of(str(tmp_path), elsewhere).train.batch_size == 5


def test_load_config_of_errors(tmp_path):
    with pytest.raises(OANetError, match="--model-dir .*nowhere: no such directory"):
        load_config_of(str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="config.yaml not found: --model-dir must be"):
        load_config_of(str(tmp_path))
    with pytest.raises(ConfigError, match="other.yaml not found"):
        load_config_of(str(tmp_path), str(tmp_path / "other.yaml"))


@pytest.mark.parametrize("fixture", ["model_v1", "trained_small"])
def test_a_model_dir_of_the_flat_layout_loads_every_value_into_its_section(fixture):
    """The fixtures were written before the model had its sections: each flat model key
    (model.rpn_nms_threshold) lands on its key of today (model.rpn.nms_threshold)."""
    model_dir = os.path.join(os.path.dirname(__file__), "..", "fixtures", fixture)
    with open(os.path.join(model_dir, CONFIG_FILE), encoding="utf-8") as f:
        flat = yaml.safe_load(f)["model"]
    with pytest.warns(UserWarning, match="flat model layout"):
        config = load_config_of(model_dir)
    assert set(flat) - set(FLAT_MODEL_KEYS) <= {"sharing", "init_from"}
    for key, value in flat.items():
        section_name, _, name = FLAT_MODEL_KEYS.get(key, key).rpartition(".")
        section = getattr(config.model, section_name) if section_name else config.model
        got = getattr(section, name)
        want = "" if value is None else value  # YAML's empty value: an empty string
        assert (list(got) if isinstance(got, tuple) else got) == want, key
