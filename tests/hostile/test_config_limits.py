"""Issue 27, case 4: configs whose values a machine cannot hold are refused when they load,
naming the file or key, before anything is written: YAML that expands (aliases) or nests
without end, image sides above what serving accepts, and batches and counts whose tensors
go beyond TensorFlow's int32 element count."""

import re

import pytest

from oanet_tf.__main__ import main
from oanet_tf.config import INT32_MAX, MAX_IMAGE_SIDE, MAX_YAML_DEPTH, load_config
from oanet_tf.errors import ConfigError
from tests.tiny_model import SYNTHETIC_CONFIG


def billion_laughs(levels: int) -> str:
    """A few hundred bytes of YAML whose aliases expand to 10**levels strings."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_aliases_are_refused_before_they_expand(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(billion_laughs(9))  # 10**9 strings, were they expanded
    assert path.stat().st_size < 1000
    with pytest.raises(ConfigError, match=r"alias \(\*l0\): configs refuse aliases") as info:
        load_config(str(path))
    assert str(info.value).startswith(f"{path}: line 2:")


def test_an_alias_under_known_keys_is_refused(tmp_path):
    """Even a harmless alias: a config never needs one, so none is read."""
    path = tmp_path / "alias.yaml"
    path.write_text("data:\n  scale_jitter: &pair [1.0, 1.0]\n  synthetic_size: *pair\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: line 3: an alias (*pair)")):
        load_config(str(path))
    with pytest.raises(ConfigError, match=r"--set .*alias"):
        load_config(SYNTHETIC_CONFIG, ["data.scale_jitter=[&a 1.0, *a]"])


@pytest.mark.parametrize("depth", [MAX_YAML_DEPTH + 1, 20000])
def test_deep_nesting_is_refused_naming_the_file(tmp_path, depth):
    path = tmp_path / "deep.yaml"
    path.write_text("train:\n  decay_steps: " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(ConfigError, match=f"nested deeper than {MAX_YAML_DEPTH} levels") as info:
        load_config(str(path))
    assert str(info.value).startswith(f"{path}: line 2:")


def test_the_deepest_key_of_the_schema_still_loads(tmp_path):
    path = tmp_path / "buckets.yaml"
    path.write_text("data:\n  buckets: [[96, 128], [128, 96]]\n")  # MAX_YAML_DEPTH levels
    assert load_config(str(path)).data.buckets == ((96, 128), (128, 96))


def test_train_refuses_deep_nesting_as_a_config_error(tmp_path, capsys):
    path, model_dir = tmp_path / "deep.yaml", tmp_path / "run"
    path.write_text("train: " + "[" * 20000 + "]" * 20000 + "\n")
    code = main(["train", "--config", str(path), "--model-dir", str(model_dir)])
    err = capsys.readouterr().err
    assert code == 2 and f"error: {path}: line 1: nested deeper" in err
    assert "internal error" not in err and not model_dir.exists()


@pytest.mark.parametrize("override, key, fragment", [
    ("data.max_side=9000", "data.max_side", "9000 is above export.max_image_side (8192)"),
    ("data.short_side=8193", "data.short_side", "is above export.max_image_side"),
    (f"export.max_image_side={MAX_IMAGE_SIDE + 1}", "export.max_image_side",
     f"must lie between 1 and {MAX_IMAGE_SIDE}"),
])
def test_image_sides_beyond_what_serving_accepts(override, key, fragment):
    with pytest.raises(ConfigError, match=re.escape(f"{key}: ")) as info:
        load_config(SYNTHETIC_CONFIG, [override])
    assert fragment in str(info.value)


def test_a_batch_of_a_billion_images_is_refused_naming_the_batch():
    # synthetic.yaml pads every image to its 128x128 bucket: 3 * 128**2 floats an image
    most = INT32_MAX // (3 * 128 * 128)
    with pytest.raises(ConfigError, match=r"^train\.batch_size: 1000000000 makes") as info:
        load_config(SYNTHETIC_CONFIG, ["train.batch_size=1000000000"])
    assert f"at most {most:,} at these sizes" in str(info.value)


def test_the_batch_bound_follows_the_padded_side():
    # COCO: max_side 1333 pads to 1344, both orientations: 3 * 1344**2 floats an image
    with pytest.raises(ConfigError, match=f"at most {INT32_MAX // (3 * 1344 ** 2):,} at"):
        load_config("configs/coco_r50.yaml", ["train.batch_size=1000"])


def test_at_coco_sizes_the_pooled_rois_and_pasted_masks_bound_the_batches_first():
    """docs/configuration.md's numbers: 512 RoIs of 7x7x256 an image allow 334 training images; 100 pasted
    1344x1344 masks an image allow 11 evaluation images."""
    assert INT32_MAX // (512 * 7 * 7 * 256) == 334 and INT32_MAX // (100 * 1344 ** 2) == 11
    config = load_config("configs/coco_r50.yaml", ["train.batch_size=334", "eval.batch_size=11"])
    assert (config.train.batch_size, config.eval.batch_size) == (334, 11)
    with pytest.raises(ConfigError, match=r"^model\.roi_heads\.batch_size_per_image: 512 makes .*"
                                          r"train\.batch_size \(335\)"):
        load_config("configs/coco_r50.yaml", ["train.batch_size=335"])
    with pytest.raises(ConfigError, match=r"^model\.roi_heads\.detections_per_image: 100 makes .*"
                                          r"eval\.batch_size \(12\)"):
        load_config("configs/coco_r50.yaml", ["eval.batch_size=12"])


@pytest.mark.parametrize("override, key", [
    ("data.max_instances=1000000", "data.max_instances"),
    ("eval.batch_size=200000", "eval.batch_size"),
    ("model.roi_heads.detections_per_image=100000000", "model.roi_heads.detections_per_image"),
    ("model.rpn.post_nms_topk_test=100000000", "model.rpn.post_nms_topk_test"),
    ("model.rpn.post_nms_topk_train=100000000", "model.rpn.post_nms_topk_train"),
    ("model.roi_heads.batch_size_per_image=100000000", "model.roi_heads.batch_size_per_image"),
])
def test_counts_whose_tensors_overflow_int32_are_refused(override, key):
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: \d+ makes .* beyond the "
                                          rf"2,147,483,647"):
        load_config(SYNTHETIC_CONFIG, [override])


@pytest.mark.parametrize("override, key, kind", [
    (f"model.rpn.pre_nms_topk_train={INT32_MAX + 1}", "model.rpn.pre_nms_topk_train", "int32"),
    ("train.steps_per_epoch=1000000000000", "train.steps_per_epoch", "int32"),
    ("train.base_learning_rate=1.0e+39", "train.base_learning_rate", "float32"),
    ("model.rpn.anchor_sizes=[32, 1.0e+40]", "model.rpn.anchor_sizes", "float32"),
])
def test_numbers_beyond_what_tensorflow_holds_are_refused(override, key, kind):
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: .* beyond {kind}'s range"):
        load_config(SYNTHETIC_CONFIG, [override])
