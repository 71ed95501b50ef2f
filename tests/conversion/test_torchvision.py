"""The converter's checks and the `convert` command (no torch needed: .npz state dicts)."""

import builtins
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from oanet_tf.conversion import torchvision as conversion
from oanet_tf.conversion import torchvision_state
from oanet_tf.environment import ENVIRONMENT_FILE, cpu_description
from oanet_tf.errors import OANetError


def test_published_and_current_names_are_one_layout():
    assert torchvision_state.canonical_name("rpn.head.conv.0.0.weight") == "rpn.head.conv.weight"
    assert torchvision_state.canonical_name(
        "backbone.fpn.inner_blocks.3.0.bias") == "backbone.fpn.inner_blocks.3.bias"
    assert torchvision_state.canonical_name(
        "roi_heads.mask_head.0.0.weight") == "roi_heads.mask_head.mask_fcn1.weight"
    shapes = torchvision_state.expected_shapes()
    assert len(shapes) == 307 and shapes["roi_heads.box_predictor.bbox_pred.weight"] == (364, 1024)


def test_the_state_dict_layout_loads_without_tensorflow():
    """scripts/torchvision_reference.py imports it in a torch environment: no TensorFlow, no
    Keras, although the ResNet's constants come from the backbone package."""
    code = ("import sys; from oanet_tf.conversion import torchvision_state; "
            "torchvision_state.expected_shapes('resnet101'); "
            "sys.exit(bool({'tensorflow', 'keras'} & set(sys.modules)))")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=root).returncode == 0


def test_a_state_dict_that_does_not_fit_names_its_keys():
    state = {key: np.zeros(shape, np.float32)
             for key, shape in torchvision_state.expected_shapes().items()}
    del state["rpn.head.conv.weight"]
    state["extra.weight"] = np.zeros(1, np.float32)
    state["roi_heads.box_predictor.cls_score.weight"] = np.zeros((81, 1024), np.float32)
    with pytest.raises(OANetError) as err:
        conversion.check_state_dict(state, "resnet50", "x.pth")
    message = str(err.value)
    assert "1 missing: rpn.head.conv.weight" in message
    assert "1 unexpected: extra.weight" in message
    assert "cls_score.weight (81, 1024) (expected (91, 1024))" in message


def test_a_pth_without_torch_says_how_to_get_it(tmp_path, monkeypatch):
    path = tmp_path / "model.pth"
    path.write_bytes(b"not read")
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch":
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(OANetError, match=r"needs PyTorch: pip install 'oanet_tf\[torch\]'"):
        conversion.read_state_dict(str(path))


def test_a_model_of_keras_applications_layout_is_refused_naming_the_switch(coco_sample_dir):
    from oanet_tf.config import load_config
    from oanet_tf.data.panoptic_format import CategoryMap
    from oanet_tf.fileio import read_json
    from oanet_tf.modeling.builder import build_oanet

    config = load_config("configs/coco_r50_torchvision.yaml", ["model.backbone.stride_in=1x1"])
    categories = CategoryMap.from_categories(
        read_json(os.path.join(coco_sample_dir, "panoptic.json"))["categories"])
    model = build_oanet(config.model, config.train, categories, load_backbone_weights=False)
    with pytest.raises(OANetError, match="not torchvision's ResNet layout "
                                         r"\(model.backbone.stride_in: 3x3\)"):
        conversion.convert_into(model, torchvision_state.seeded_state_dict(0), categories)


def test_category_slots_follow_coco_ids():
    from oanet_tf.data.panoptic_format import CategoryMap

    categories = CategoryMap.from_categories([
        {"id": 1, "name": "person", "isthing": 1}, {"id": 13, "name": "stop sign", "isthing": 1},
        {"id": 200, "name": "grass", "isthing": 0}])
    slots, unused = conversion.class_slots(categories)
    assert slots == [1, 13] and len(unused) == 88 and 12 in unused and 13 not in unused
    bad = CategoryMap.from_categories([{"id": 95, "name": "x", "isthing": 1}])
    with pytest.raises(OANetError, match=r"thing categories \[95\]"):
        conversion.class_slots(bad)


def test_convert_command_writes_a_model_dir(tmp_path, coco_sample_dir, capsys):
    """CLI from a fresh process: a seeded R50 state dict (.npz) -> a model dir that
    load_trained_model reads (export and predict read it so; README); converting into it
    again is refused."""
    checkpoint = tmp_path / "seed0.npz"
    np.savez(checkpoint, **torchvision_state.seeded_state_dict(0))
    model_dir = tmp_path / "tv"
    command = [sys.executable, "-m", "oanet_tf", "convert", "torchvision", str(checkpoint),
               "--config", "configs/coco_r50_torchvision.yaml", "--model-dir", str(model_dir),
               "--categories", os.path.join(coco_sample_dir, "panoptic.json")]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "stuff branch and SRM freshly initialised" in done.stdout
    assert (model_dir / "checkpoints" / "last.weights.h5").is_file()
    record = json.loads((model_dir / "conversion.json").read_text())
    assert record["fresh"] == ["stuff_branch", "srm"] and len(record["unused_slots"]) == 10
    starts = json.loads((model_dir / ENVIRONMENT_FILE).read_text())["starts"]
    assert [start["command"] for start in starts] == ["convert"]
    assert starts[0]["numpy"] == np.__version__ and starts[0]["cpu"] == cpu_description()
    from oanet_tf.__main__ import main

    assert main(command[3:]) == 2
    assert "convert into a new --model-dir" in capsys.readouterr().err
    assert len(json.loads((model_dir / ENVIRONMENT_FILE).read_text())["starts"]) == 1

    from oanet_tf.inference.trained_model import load_trained_model

    trained = load_trained_model(str(model_dir))
    assert trained.model.roi_heads.unused_class_slots == 10
    kernel = trained.model.rpn.head.objectness.get_weights()[0]
    want = torchvision_state.seeded_state_dict(0)["rpn.head.cls_logits.weight"]
    np.testing.assert_array_equal(kernel, want.transpose(2, 3, 1, 0))
