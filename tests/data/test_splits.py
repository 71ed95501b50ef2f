"""oanet_tf.data.splits: where a split's files are (configured, or the synthetic dataset, which
resolving never writes), and opening a split as a pipeline source (COCO files or TFRecords)."""

import os
import subprocess
import sys

import pytest

from oanet_tf.config import DataConfig, SplitConfig
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.__main__ import main
from oanet_tf.data.splits import (make_synthetic_command, missing_synthetic_splits, open_split,
                                  resolve_split, synthetic_split)
from oanet_tf.data.tfrecords import MANIFEST_FILE, TFRecordSource
from oanet_tf.errors import DatasetError


def test_synthetic_split_layout():
    split = synthetic_split(os.path.join("data", "synthetic"), "val")
    base = os.path.join("data", "synthetic", "val")
    assert split == SplitConfig(image_dir=os.path.join(base, "images"),
                                panoptic_json=os.path.join(base, "panoptic.json"),
                                panoptic_dir=os.path.join(base, "panoptic"),
                                instances_json=os.path.join(base, "instances.json"),
                                tfrecord_dir="")


def test_resolve_split_returns_a_copy_of_configured_paths(tmp_path):
    val = SplitConfig(image_dir="im", panoptic_json="pan.json", panoptic_dir="pan")
    config = DataConfig(val=val, synthetic_dir=str(tmp_path / "never"))
    split = resolve_split(config, "val")
    assert split == val and split is not val  # a copy: the caller may change it
    split.image_dir = "elsewhere"
    assert config.val.image_dir == "im"
    assert not os.path.exists(tmp_path / "never")  # configured paths: nothing generated


def _files_under(root) -> list:
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)


def test_missing_synthetic_data_is_refused_with_the_command_that_makes_it(tmp_path):
    root = str(tmp_path / "synthetic")
    config = DataConfig(synthetic_dir=root, synthetic_train=3, synthetic_val=2,
                        synthetic_seed=4, synthetic_size=(40, 48))
    assert missing_synthetic_splits(config) == ("train", "val")
    for split in ("train", "val"):
        with pytest.raises(DatasetError) as raised:
            resolve_split(config, split)
        message = str(raised.value)
        assert "\n" not in message and root in message
        assert message.endswith("python -m oanet_tf make-synthetic --out "
                                f"{root} --train 3 --val 2 --seed 4 --size 40x48")
    assert not os.path.exists(root)  # resolving never writes


def test_the_named_command_makes_what_the_config_reads(tmp_path, capsys):
    root = str(tmp_path / "synthetic")
    config = DataConfig(synthetic_dir=root, synthetic_train=2, synthetic_val=1,
                        synthetic_size=(32, 40))
    words = make_synthetic_command(config).split()
    assert words[:3] == ["python", "-m", "oanet_tf"]
    assert main(words[3:]) == 0
    assert missing_synthetic_splits(config) == ()
    for split, count in (("train", 2), ("val", 1)):
        data = PanopticDataset.from_split(resolve_split(config, split))
        assert len(data) == count and tuple(data.image_sizes[0]) == (32, 40)


def test_configured_splits_never_read_synthetic_data(tmp_path):
    config = DataConfig(train=SplitConfig(tfrecord_dir="records"),
                        val=SplitConfig(panoptic_json="pan.json"),
                        synthetic_dir=str(tmp_path / "never"))
    assert missing_synthetic_splits(config) == ()
    config.train = SplitConfig()
    assert missing_synthetic_splits(config) == ("train",)


@pytest.mark.parametrize("function", [lambda c, s: resolve_split(c, s),
                                      lambda c, s: open_split(c, s, False)],
                         ids=["resolve_split", "open_split"])
def test_unknown_split_is_refused(function):
    with pytest.raises(ValueError, match="unknown split 'test'"):
        function(DataConfig(), "test")


def test_resolving_paths_does_not_load_tensorflow(tmp_path):
    code = ("import sys; from oanet_tf.config import DataConfig, SplitConfig; "
            "from oanet_tf.data.splits import resolve_split; "
            "resolve_split(DataConfig(val=SplitConfig(panoptic_json='p.json')), 'val'); "
            "sys.exit('tensorflow' in sys.modules)")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=root).returncode == 0


def test_resolve_split_reads_an_existing_synthetic_dataset_as_it_is(tmp_path):
    from oanet_tf.data.synthetic import make_synthetic_dataset

    root = str(tmp_path / "synthetic")
    make_synthetic_dataset(root, 2, 1, 0, (32, 32), progress=False)
    # Other counts than the files hold: the files are read as they are, never rewritten.
    config = DataConfig(synthetic_dir=root, synthetic_train=5, synthetic_val=1)
    files = _files_under(root)
    stamps = [os.stat(f).st_mtime_ns for f in files]
    split = resolve_split(config, "train")
    assert split == synthetic_split(root, "train")
    assert _files_under(root) == files and [os.stat(f).st_mtime_ns for f in files] == stamps


def test_open_split(five_images, tmp_path):
    data, records = five_images
    split = SplitConfig(image_dir=data.image_dir, panoptic_json=data.panoptic_json,
                        panoptic_dir=data.panoptic_dir, instances_json=data.instances_json)
    config = DataConfig(train=split, val=SplitConfig(tfrecord_dir=records.directory))
    opened = open_split(config, "val", skip_bad_images=False)
    assert isinstance(opened, TFRecordSource) and len(opened) == 5
    opened = open_split(config, "train", skip_bad_images=True)
    assert isinstance(opened, PanopticDataset) and opened.skip_bad_images
    assert opened.panoptic_json == data.panoptic_json
    with pytest.raises(DatasetError, match=MANIFEST_FILE):
        open_split(DataConfig(train=SplitConfig(tfrecord_dir=str(tmp_path))), "train", False)
