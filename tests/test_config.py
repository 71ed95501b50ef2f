"""Config loading: YAML files, --set overrides, and clear errors."""

import os
import re
import textwrap

import pytest

from oanet_tf.config import (FLAT_MODEL_KEYS, Config, ModelConfig, load_config, resolve_config,
                             save_config, shipped_configs, translate_flat_model_keys,
                             validate_for_training)
from oanet_tf.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("name", ["synthetic", "coco_r50", "coco_r101"])
def test_shipped_configs_load(name):
    config = load_config(f"configs/{name}.yaml")
    assert isinstance(config, Config)


def test_paper_settings_in_coco_configs():
    config = load_config("configs/coco_r50.yaml")
    assert config.model.backbone.name == "resnet50"
    assert config.train.seg_loss_weight == 0.25  # lambda of Eq. 1, Table 1
    assert config.train.base_learning_rate == 0.02 and config.train.batch_size == 16
    assert config.train.decay_steps == (60000, 80000)
    assert config.eval.min_stuff_area == 4900
    assert load_config("configs/coco_r101.yaml").model.backbone.name == "resnet101"


def test_override_sets_typed_values():
    config = load_config("configs/synthetic.yaml",
                         ["train.batch_size=8", "model.rpn.anchor_sizes=[8, 16, 32, 64, 128]",
                          "eval.merge_order=detection", "train.deterministic=true",
                          "train.jit_compile=false"])
    assert config.train.batch_size == 8
    assert config.model.rpn.anchor_sizes == (8, 16, 32, 64, 128)
    assert config.eval.merge_order == "detection"
    assert config.train.deterministic is True
    assert config.train.jit_compile == "false"


@pytest.mark.parametrize("override, fragment", [
    ("model.bakbone=resnet50", "model.bakbone"),
    ("modle.backbone=resnet50", "modle"),
    ("train.batch_size=two", "train.batch_size"),
    ("train.batch_size", "section.key=value"),
    ("eval.merge_order=random", "eval.merge_order"),
    ("eval.stuff_area_rule=per_pixel", "eval.stuff_area_rule"),
    ("eval.srm_input=everything", "eval.srm_input"),
    ("data.buckets=[[100, 128]]", "multiples of 32"),
    ("data.buckets=[800]", "data.buckets"),
    ("train.log_every_steps=-1", "train.log_every_steps: must not be negative (0 turns it off)"),
    ("model.rpn.nms_threshold=3", "model.rpn.nms_threshold: must lie between 0 and 1, got 3"),
    ("train.eval_every_steps=-5", "train.eval_every_steps: must not be negative"),
    ("train.eval_step_images=-1", "train.eval_step_images: must not be negative"),
    ("train.checkpoint_every_steps=-2", "train.checkpoint_every_steps: must not be negative"),
    ("eval.batch_size=0", "eval.batch_size: must be positive, got 0"),
    ("model.backbone.weights=imagenet", "small_resnet has no pretrained weights"),
    ("model.backbone.freeze_at=6", "freeze_at: must be a number of stages from 0 to 5, got 6"),
    ("model.backbone.freeze_at=-1", "model.backbone.freeze_at: must be a number of stages"),
])
def test_bad_overrides_name_the_key(override, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_config("configs/synthetic.yaml", [override])


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  batchsize: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert str(path) in str(err.value) and "train.batchsize" in str(err.value)


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("configs/does_not_exist.yaml")


def test_save_and_reload_round_trip(tmp_path):
    config = load_config("configs/synthetic.yaml", ["train.epochs=3"])
    path = str(tmp_path / "config.yaml")
    save_config(config, path)
    assert load_config(path) == config


def test_xla_needs_buckets():
    with pytest.raises(ConfigError, match=r"train\.jit_compile: true needs data\.buckets"):
        load_config("configs/coco_r50.yaml", ["train.jit_compile=true"])
    assert load_config("configs/coco_r50.yaml", [
        "train.jit_compile=true", "data.buckets=[[800, 1344], [1344, 800]]"]).data.buckets


def test_buckets_load_as_size_pairs():
    config = load_config("configs/synthetic.yaml", ["data.buckets=[[96, 128], [128, 96]]"])
    assert config.data.buckets == ((96, 128), (128, 96))


def test_a_retired_key_loads_with_a_warning_naming_its_replacement():
    with pytest.warns(UserWarning, match=r"data\.padded_size .*data\.buckets"):
        config = load_config("configs/synthetic.yaml", ["data.padded_size=[128, 128]"])
    assert not hasattr(config.data, "padded_size")


@pytest.mark.parametrize("name", ["coco_r50", "coco_r101"])
def test_coco_configs_refuse_to_train_until_the_backbone_start_is_chosen(name):
    config = load_config(f"configs/{name}.yaml")
    assert config.model.backbone.weights == "" and config.model.backbone.freeze_at == 2
    with pytest.raises(ConfigError) as err:
        validate_for_training(config)
    message = str(err.value)
    assert message.startswith("model.backbone.weights is empty") and "\n" not in message
    assert all(word in message for word in ("imagenet", "none", config.model.backbone.name))
    for start in ("imagenet", "none", "/data/resnet_notop.h5"):
        validate_for_training(load_config(f"configs/{name}.yaml",
                                          [f"model.backbone.weights={start}"]))


def test_the_synthetic_config_trains_its_small_resnet_from_scratch():
    config = load_config("configs/synthetic.yaml")
    assert config.model.backbone.weights == "none"
    validate_for_training(config)
    validate_for_training(load_config("configs/synthetic.yaml", ["model.backbone.weights="]))


def test_a_component_setting_is_set_by_its_section():
    config = load_config("configs/synthetic.yaml", ["model.rpn.nms_threshold=0.6",
                                                    "model.srm.kernel=3x3"])
    assert config.model.rpn.nms_threshold == 0.6 and config.model.srm.kernel == "3x3"
    assert config.model.roi_heads.detections_per_image == 20  # synthetic.yaml's, untouched


@pytest.mark.parametrize("override, new_key", [
    ("model.rpn_nms_threshold=0.6", "model.rpn.nms_threshold"),
    ("model.backbone=resnet50", "model.backbone.name"),
    ("model.stuff_head_channels=8", "model.stuff_branch.channels"),
])
def test_a_flat_key_in_an_override_is_refused_naming_its_new_key(override, new_key):
    with pytest.raises(ConfigError, match=re.escape(f"(now {new_key})")):
        load_config("configs/synthetic.yaml", [override])


FLAT_CONFIG = """\
model:
  backbone: resnet101
  backbone_weights: imagenet
  sharing: backbone
  fpn_channels: 128
  anchor_sizes: [8, 16, 32, 64, 128]
  rpn_nms_threshold: 0.6
  roi_batch_size_per_image: 32
  roi_align_aligned: false
  test_score_threshold: 0.1
  semantic_supervision: stuff_plus_things
  srm_kernel_size: 5
train:
  batch_size: 4
"""


def test_a_flat_layout_file_loads_into_the_sections_with_a_warning(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(FLAT_CONFIG)
    with pytest.warns(UserWarning, match=re.escape(str(path))):
        config = load_config(str(path))
    model = config.model
    assert (model.backbone.name, model.backbone.weights) == ("resnet101", "imagenet")
    assert model.sharing == "backbone" and model.fpn.channels == 128
    assert model.rpn.anchor_sizes == (8, 16, 32, 64, 128) and model.rpn.nms_threshold == 0.6
    assert model.roi_heads.batch_size_per_image == 32
    assert model.roi_heads.roi_align_aligned is False
    assert model.roi_heads.test_score_threshold == 0.1
    assert model.stuff_branch.supervision == "stuff_plus_things" and model.srm.kernel_size == 5
    assert config.train.batch_size == 4
    # everything else keeps its default
    assert model.rpn.conv_channels == ModelConfig().rpn.conv_channels


def test_the_translation_of_the_flat_layout_by_hand():
    flat = {"model": {"backbone": "small_resnet", "small_resnet_widths": [8, 8, 16, 16],
                      "rpn_post_nms_topk_test": 50, "roi_iou_threshold": 0.4,
                      "box_head_fc_dim": 32, "stuff_head_channels": 8, "srm_stride": 2,
                      "init_from": "runs/a", "rpn": {"conv_channels": 16}},
            "eval": {"batch_size": 1}}
    want = {"model": {"backbone": {"name": "small_resnet", "small_resnet_widths": [8, 8, 16, 16]},
                      "rpn": {"conv_channels": 16, "post_nms_topk_test": 50},
                      "roi_heads": {"iou_threshold": 0.4, "box_head_fc_dim": 32},
                      "stuff_branch": {"channels": 8}, "srm": {"stride": 2},
                      "init_from": "runs/a"},
            "eval": {"batch_size": 1}}
    with pytest.warns(UserWarning, match=r"model\.backbone is now model\.backbone\.name"):
        assert translate_flat_model_keys(flat, "old.yaml") == want
    assert flat["model"]["rpn"] == {"conv_channels": 16}  # the input is left as it was
    today = {"model": {"backbone": {"name": "resnet50"}, "rpn": {"nms_threshold": 0.5}}}
    assert translate_flat_model_keys(today, "new.yaml") is today
    with pytest.raises(ConfigError, match=r"model\.rpn_nms_threshold and model\.rpn\.nms"):
        translate_flat_model_keys({"model": {"rpn_nms_threshold": 0.6, "rpn": {
            "nms_threshold": 0.5}}}, "both.yaml")


@pytest.mark.parametrize("flat_key", sorted(FLAT_MODEL_KEYS))
def test_every_flat_key_names_a_field_of_today(flat_key):
    section_name, name = FLAT_MODEL_KEYS[flat_key].split(".")
    assert hasattr(getattr(ModelConfig(), section_name), name)


SHIPPED = ["coco_r101", "coco_r50", "coco_r50_torchvision", "synthetic"]


def test_shipped_configs_are_the_yaml_files_of_configs():
    assert list(shipped_configs()) == SHIPPED
    for name, path in shipped_configs().items():
        assert os.path.samefile(path, os.path.join(ROOT, "configs", f"{name}.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_config_loads_by_name_from_any_folder(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here: the name alone finds it
    assert load_config(name) == load_config(os.path.join(ROOT, "configs", f"{name}.yaml"))


def test_an_unknown_name_lists_the_shipped_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=re.escape(
            "config coco_r18 not found: no such file, nor the name of a shipped config: "
            + ", ".join(SHIPPED))):
        load_config("coco_r18")


def test_an_existing_path_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "synthetic").write_text("train:\n  batch_size: 3\n")
    assert load_config("synthetic").train.batch_size == 3
    assert load_config("synthetic").model.backbone.name == "resnet50"  # not the shipped one
    assert resolve_config("synthetic") == "synthetic"


def _write(path, text):
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_base_is_loaded_first_and_the_file_merges_over_it_section_by_section(tmp_path):
    _write(tmp_path / "base.yaml", """
        model:
          rpn:
            nms_threshold: 0.6
            anchor_sizes: [8, 16, 32, 64, 128]
        train:
          batch_size: 4
          epochs: 3
    """)
    (tmp_path / "sub").mkdir()
    child = _write(tmp_path / "sub" / "child.yaml", """
        _base_: ../base.yaml
        model:
          rpn:
            anchor_sizes: [4, 8]
        train:
          epochs: 5
    """)
    config = load_config(child)
    # by hand: the child's keys, else the base's, else the defaults
    expected = Config()
    expected.model.rpn.nms_threshold = 0.6
    expected.model.rpn.anchor_sizes = (4, 8)  # a list replaces, never merges
    expected.train.batch_size = 4
    expected.train.epochs = 5
    assert config == expected
    # overrides apply over the whole chain
    assert load_config(child, ["train.batch_size=2"]).train.batch_size == 2


def test_a_chain_of_bases_and_a_shipped_base_by_name(tmp_path):
    _write(tmp_path / "a.yaml", "_base_: synthetic\ntrain:\n  epochs: 2\n")
    _write(tmp_path / "b.yaml", "_base_: a.yaml\ntrain:\n  batch_size: 2\n")
    config = load_config(str(tmp_path / "b.yaml"))
    expected = load_config("synthetic", ["train.epochs=2", "train.batch_size=2"])
    assert config == expected


def test_a_cycle_of_bases_is_refused_naming_the_files(tmp_path):
    a = _write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    b = _write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match=re.escape(f"_base_ cycle: {a} -> {b} -> {a}")):
        load_config(a)
    itself = _write(tmp_path / "self.yaml", "_base_: self.yaml\n")
    with pytest.raises(ConfigError, match="_base_ cycle"):
        load_config(itself)


@pytest.mark.parametrize("text, fragment", [
    ("_base_: missing.yaml\n", "_base_: config missing.yaml not found: no such file (relative"),
    ("_base_: [a.yaml]\n", "_base_: expected a shipped config's name or a path, got ['a.yaml']"),
    ("_base_: ''\n", "_base_: expected a shipped config's name or a path"),
])
def test_a_bad_base_is_refused_naming_the_file(tmp_path, text, fragment):
    path = _write(tmp_path / "child.yaml", text)
    with pytest.raises(ConfigError, match=re.escape(fragment)) as err:
        load_config(path)
    assert str(err.value).startswith(path)


def test_an_error_in_a_base_names_the_base_file(tmp_path):
    base = _write(tmp_path / "base.yaml", "train:\n  batchsize: 3\n")
    child = _write(tmp_path / "child.yaml", "_base_: base.yaml\n")
    with pytest.raises(ConfigError, match=re.escape(f"{base}: unknown config key(s): "
                                                    f"train.batchsize")):
        load_config(child)


def test_r101_is_r50_but_for_its_backbone_and_export_folder():
    r50, r101 = load_config("coco_r50").to_dict(), load_config("coco_r101").to_dict()
    assert r101["model"]["backbone"]["name"] == "resnet101"
    assert r101["export"]["export_dir"] == "saved_models/oanet_coco_r101"
    r101["model"]["backbone"]["name"] = r50["model"]["backbone"]["name"]
    r101["export"]["export_dir"] = r50["export"]["export_dir"]
    assert r101 == r50
    with open(os.path.join(ROOT, "configs", "coco_r101.yaml"), encoding="utf-8") as f:
        assert "_base_: coco_r50\n" in f.read()


def test_a_saved_config_is_resolved_and_loads_without_its_bases(tmp_path):
    config = load_config("coco_r101")
    path = tmp_path / "config.yaml"
    save_config(config, str(path))
    assert "_base_" not in path.read_text()
    assert load_config(str(path)) == config
