"""Config loading: YAML files, --set overrides, and clear errors."""

import pytest

from oanet_tf.config import Config, load_config, save_config, validate_for_training
from oanet_tf.errors import ConfigError


@pytest.mark.parametrize("name", ["synthetic", "coco_r50", "coco_r101"])
def test_shipped_configs_load(name):
    config = load_config(f"configs/{name}.yaml")
    assert isinstance(config, Config)


def test_paper_settings_in_coco_configs():
    config = load_config("configs/coco_r50.yaml")
    assert config.model.backbone == "resnet50"
    assert config.train.seg_loss_weight == 0.25  # lambda of Eq. 1, Table 1
    assert config.train.base_learning_rate == 0.02 and config.train.batch_size == 16
    assert config.train.decay_steps == (60000, 80000)
    assert config.eval.min_stuff_area == 4900
    assert load_config("configs/coco_r101.yaml").model.backbone == "resnet101"


def test_override_sets_typed_values():
    config = load_config("configs/synthetic.yaml",
                         ["train.batch_size=8", "model.anchor_sizes=[8, 16, 32, 64, 128]",
                          "eval.merge_order=detection", "train.deterministic=true",
                          "train.jit_compile=false"])
    assert config.train.batch_size == 8
    assert config.model.anchor_sizes == (8, 16, 32, 64, 128)
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
    ("train.log_every_steps=-1", "train.log_every_steps: -1 is negative"),
    ("train.eval_every_steps=-5", "train.eval_every_steps: -5 is negative"),
    ("train.eval_step_images=-1", "train.eval_step_images: -1 is negative"),
    ("train.checkpoint_every_steps=-2", "train.checkpoint_every_steps: -2 is negative"),
    ("eval.batch_size=0", "eval.batch_size: 0, needs at least 1"),
    ("model.backbone_weights=imagenet", "small_resnet has no pretrained weights"),
    ("model.backbone_freeze_at=6", "model.backbone_freeze_at: 6"),
    ("model.backbone_freeze_at=-1", "model.backbone_freeze_at: -1"),
])
def test_bad_overrides_name_the_key(override, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.").replace("[", r"\[")):
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
    assert config.model.backbone_weights == "" and config.model.backbone_freeze_at == 2
    with pytest.raises(ConfigError) as err:
        validate_for_training(config)
    message = str(err.value)
    assert message.startswith("model.backbone_weights is empty") and "\n" not in message
    assert all(word in message for word in ("imagenet", "none", config.model.backbone))
    for start in ("imagenet", "none", "/data/resnet_notop.h5"):
        validate_for_training(load_config(f"configs/{name}.yaml",
                                          [f"model.backbone_weights={start}"]))


def test_the_synthetic_config_trains_its_small_resnet_from_scratch():
    config = load_config("configs/synthetic.yaml")
    assert config.model.backbone_weights == "none"
    validate_for_training(config)
    validate_for_training(load_config("configs/synthetic.yaml", ["model.backbone_weights="]))
