"""Issue 17, case 4: values that parse but make no sense are refused when the config loads,
before a run writes anything."""

import pytest

from oanet_tf.__main__ import main
from oanet_tf.config import load_config
from oanet_tf.errors import ConfigError
from tests.tiny_model import SYNTHETIC_CONFIG


@pytest.mark.parametrize("override, key, problem", [
    ("train.base_learning_rate=.nan", "train.base_learning_rate", "finite"),
    ("train.momentum=.inf", "train.momentum", "finite"),
    ("model.roi_heads.box_coder_weights=[10, .nan, 5, 5]", "model.roi_heads.box_coder_weights",
     "finite"),
    ("train.epochs=-1", "train.epochs", "positive"),
    ("train.batch_size=0", "train.batch_size", "positive"),
    ("train.steps_per_epoch=0", "train.steps_per_epoch", "positive"),
    ("train.warmup_steps=-5", "train.warmup_steps", "negative"),
    ("eval.overlap_threshold=1.5", "eval.overlap_threshold", "between 0 and 1"),
    ("data.scale_jitter=[1.2, 0.8]", "data.scale_jitter", "low <= high"),
    ("data.num_parallel_calls=0", "data.num_parallel_calls", "positive"),
])
def test_invalid_values_are_refused_naming_the_key(override, key, problem):
    with pytest.raises(ConfigError, match=problem) as info:
        load_config(SYNTHETIC_CONFIG, [override])
    assert key in str(info.value)


def test_train_refuses_before_writing_the_model_dir(tmp_path, capsys):
    model_dir = tmp_path / "run"
    code = main(["train", "--config", SYNTHETIC_CONFIG, "--model-dir", str(model_dir),
                 "--set", "train.epochs=-1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["error: train.epochs: must be positive, got -1"]
    assert not model_dir.exists()


def test_predict_refuses_a_batch_size_below_one(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["predict", str(tmp_path), "--model-dir", str(tmp_path), "--out",
              str(tmp_path / "out"), "--batch-size", "-1"])
    assert info.value.code == 2
    assert "--batch-size: must be a positive integer" in capsys.readouterr().err


@pytest.mark.parametrize("override, message", [
    ("model.rpn.nms_threshold=3", "error: model.rpn.nms_threshold: must lie between 0 and 1, "
                                  "got 3"),
    ("model.rpn_nms_threshold=0.6", "error: --set model.rpn_nms_threshold=0.6: unknown config "
                                    "key(s): model.rpn_nms_threshold (now "
                                    "model.rpn.nms_threshold); valid keys of model: "),
])
def test_train_names_the_dotted_key_of_a_section(tmp_path, capsys, override, message):
    model_dir = tmp_path / "run"
    code = main(["train", "--config", SYNTHETIC_CONFIG, "--model-dir", str(model_dir),
                 "--set", override])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(message)
    assert not model_dir.exists()
