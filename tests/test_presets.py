"""Presets (oanet_tf/presets.py): the registry, the shipped synthetic_demo model read offline,
hashes checked, local paths and file:// URLs as sources. Nothing here downloads."""

import builtins
import dataclasses
import hashlib
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import oanet_tf
from oanet_tf import presets
from oanet_tf.config import load_config
from oanet_tf.conversion.torchvision import check_config
from oanet_tf.data.synthetic import make_synthetic_dataset
from oanet_tf.errors import OANetError
from oanet_tf.inference.image_predictor import ImagePredictor
from oanet_tf.inference.postprocessor import image_segments
from oanet_tf.inference.trained_model import load_trained_model, read_categories

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_IMAGES = 4
IMAGES_SEED = 7  # not the preset's training data (seed 0)
TORCHVISION = "maskrcnn_r50_torchvision_coco"


def test_list_presets_names_both_without_importing_tensorflow():
    code = ("import sys, oanet_tf; names = oanet_tf.list_presets(); "
            "sys.exit(sorted(names) != ['maskrcnn_r50_torchvision_coco', 'synthetic_demo'] "
            "or bool({'tensorflow', 'keras'} & set(sys.modules)))")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT).returncode == 0
    assert oanet_tf.resolve_preset is presets.resolve_preset
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        oanet_tf.nothing  # noqa: B018


def test_synthetic_demo_resolves_offline_and_segments_synthetic_images(tmp_path):
    cache = tmp_path / "cache"
    model_dir = presets.resolve_preset("synthetic_demo", cache_dir=str(cache))
    assert not cache.exists()  # shipped: read in place, nothing fetched
    trained = load_trained_model(model_dir)
    root = str(tmp_path / "synthetic")
    make_synthetic_dataset(root, 0, NUM_IMAGES, IMAGES_SEED)
    folder = os.path.join(root, "val", "images")
    encoded = [open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))]
    config = trained.config
    predictor = ImagePredictor(trained.model, trained.categories, config.data, config.eval,
                               config.export.max_image_side)
    outputs = {k: v.numpy() for k, v in predictor.from_encoded(tf.constant(encoded)).items()}
    things = {c["id"] for c in trained.categories.categories if c["isthing"]}
    known = {c["id"] for c in trained.categories.categories}
    for index in range(NUM_IMAGES):
        panoptic, segments = image_segments(outputs, index)
        assert {s["category_id"] for s in segments} <= known
        assert things & {s["category_id"] for s in segments}, f"image {index}: no thing found"
        # Each listed segment covers its listed area of the map.
        for segment in segments:
            assert np.count_nonzero(panoptic == segment["id"]) == segment["area"] > 0


def test_a_wrong_sha256_is_refused_naming_the_file(monkeypatch):
    shipped = presets.PRESETS["synthetic_demo"]
    monkeypatch.setitem(presets.PRESETS, "synthetic_demo",
                        dataclasses.replace(shipped, sha256="0" * 64))
    weights = os.path.join(presets.PRESET_DATA, shipped.weights)
    with pytest.raises(OANetError, match=f"{weights}: sha256 .* does not match"):
        presets.resolve_preset("synthetic_demo")


def test_a_hash_prefix_is_checked_as_torchvision_checks_it(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"some weights")
    full = hashlib.sha256(b"some weights").hexdigest()
    presets.check_sha256(str(path), full)
    presets.check_sha256(str(path), full[:8].upper())
    wrong = ("1" if full[0] != "1" else "2") + full[1:8]
    with pytest.raises(OANetError, match="weights.pth: sha256"):
        presets.check_sha256(str(path), wrong)
    with pytest.raises(OANetError, match="too short"):
        presets.check_sha256(str(path), full[:4])


def test_a_download_of_the_wrong_hash_is_removed_from_the_cache(tmp_path):
    source = tmp_path / "model.keras"
    source.write_bytes(b"not the expected file")
    with pytest.raises(OANetError, match="model.keras: sha256") as err:
        presets._download(source.as_uri(), str(tmp_path / "cache"), "0" * 64)
    cached = str(err.value).split(":")[0]
    assert cached.startswith(str(tmp_path / "cache")) and not os.path.exists(cached)


def test_a_local_path_and_a_file_url_are_sources(tmp_path):
    model_dir = presets.PRESETS["synthetic_demo"].data_dir
    assert presets.resolve_preset(model_dir) == model_dir
    assert presets.resolve_preset("file://" + model_dir) == model_dir
    model = load_trained_model(model_dir).model
    saved = str(tmp_path / "oanet.keras")
    model.save(saved)
    assert presets.resolve_preset(saved) == saved
    cache = str(tmp_path / "cache")
    fetched = presets.resolve_preset("file://" + saved, cache_dir=cache)
    assert fetched == os.path.join(cache, presets.CACHE_SUBDIR, "oanet.keras")
    loaded = keras.saving.load_model(fetched)
    images = tf.random.stateless_uniform((1, 64, 64, 3), (1, 2), 0.0, 255.0)
    np.testing.assert_array_equal(loaded.detect(images)["boxes"], model.detect(images)["boxes"])
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(OANetError, match="notes.txt: not a model dir"):
        presets.resolve_preset(str(tmp_path / "notes.txt"))
    with pytest.raises(OANetError, match="must name a model dir or a .keras file"):
        presets.resolve_preset("https://example.com/weights.h5")


def test_an_unknown_name_lists_the_presets():
    with pytest.raises(OANetError, match="'nowhere' is neither a preset nor an existing path; "
                                         "the presets: synthetic_demo, maskrcnn_r50"):
        presets.resolve_preset("nowhere")


def test_the_torchvision_preset_is_torchvision_file_and_a_config_the_converter_takes():
    preset = presets.PRESETS[TORCHVISION]
    # torchvision names the file with the first 8 hex digits of its sha256.
    assert preset.weights == ("https://download.pytorch.org/models/"
                              f"maskrcnn_resnet50_fpn_coco-{preset.sha256}.pth")
    assert len(preset.sha256) == presets.MIN_HASH_PREFIX
    assert "UNTRAINED" in preset.description and "stuff branch and the SRM" in preset.description
    config = load_config(preset.config)
    assert config == load_config(os.path.join(ROOT, "configs", "coco_r50_torchvision.yaml"))
    categories = read_categories(preset.categories)
    assert (categories.num_things, categories.num_stuff) == (80, 53)
    check_config(config, categories)  # what the converter checks before it reads weights


def test_the_torchvision_preset_without_torch_names_the_extra(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch":
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded before checking for torch")

    monkeypatch.setattr(builtins, "__import__", no_torch)
    monkeypatch.setattr(keras.utils, "get_file", no_download)
    with pytest.raises(OANetError, match=rf"preset {TORCHVISION} needs PyTorch .*"
                                         r"pip install 'oanet_tf\[torch\]'"):
        presets.resolve_preset(TORCHVISION, cache_dir=str(tmp_path))
