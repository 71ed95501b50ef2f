"""oanet_tf.data.splits: where a split's files are (configured, or the synthetic dataset made on
demand), and opening a split as a pipeline source (COCO files or TFRecords)."""

import os
import subprocess
import sys

import pytest

from oanet_tf.config import DataConfig, SplitConfig
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.data.splits import open_split, resolve_split, synthetic_split
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


def test_resolve_split_without_generating_writes_nothing(tmp_path):
    root = str(tmp_path / "synthetic")
    config = DataConfig(synthetic_dir=root)
    assert resolve_split(config, "train", generate=False) == synthetic_split(root, "train")
    assert not os.path.exists(root)


@pytest.mark.parametrize("function", [lambda c, s: resolve_split(c, s),
                                      lambda c, s: open_split(c, s, False)],
                         ids=["resolve_split", "open_split"])
def test_unknown_split_is_refused(function):
    with pytest.raises(ValueError, match="unknown split 'test'"):
        function(DataConfig(), "test")


def test_resolving_paths_does_not_load_tensorflow(tmp_path):
    code = ("import sys; from oanet_tf.config import DataConfig; "
            "from oanet_tf.data.splits import resolve_split; "
            f"resolve_split(DataConfig(synthetic_dir={str(tmp_path)!r}), 'val', generate=False); "
            "sys.exit('tensorflow' in sys.modules)")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=root).returncode == 0


def test_resolve_split_reuses_an_existing_synthetic_dataset(tmp_path):
    from oanet_tf.config import DataConfig
    from oanet_tf.data.splits import resolve_split
    from oanet_tf.data.synthetic import make_synthetic_dataset

    root = str(tmp_path / "synthetic")
    make_synthetic_dataset(root, 2, 1, 0, (32, 32), progress=False)
    config = DataConfig(synthetic_dir=root, synthetic_train=2, synthetic_val=1)
    stamp = os.stat(os.path.join(root, "train", "panoptic.json")).st_mtime_ns
    split = resolve_split(config, "train")
    assert split.panoptic_json == os.path.join(root, "train", "panoptic.json")
    assert os.stat(split.panoptic_json).st_mtime_ns == stamp  # not written again


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
