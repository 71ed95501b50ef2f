"""The demo's explicit data step: it writes the synthetic dataset the config reads when that
is missing (the same files as `make-synthetic` with the config's settings), and leaves an
existing one, or a config that names its own files, alone."""

import os

from oanet_tf.cli.demo import make_missing_synthetic
from oanet_tf.config import DataConfig, SplitConfig
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.data.splits import missing_synthetic_splits, resolve_split
from oanet_tf.data.synthetic import make_synthetic_dataset


def test_makes_the_missing_dataset_once(tmp_path):
    config = DataConfig(synthetic_dir=str(tmp_path / "made"), synthetic_train=2,
                        synthetic_val=1, synthetic_seed=3, synthetic_size=(32, 48))
    make_missing_synthetic(config)
    assert missing_synthetic_splits(config) == ()
    # The same files as the maker writes with the config's settings.
    make_synthetic_dataset(str(tmp_path / "reference"), 2, 1, 3, (32, 48))
    for split, count in (("train", 2), ("val", 1)):
        made = PanopticDataset.from_split(resolve_split(config, split))
        assert len(made) == count
        reference = os.path.join(tmp_path, "reference", split, "panoptic.json")
        with open(made.panoptic_json, "rb") as a, open(reference, "rb") as b:
            assert a.read() == b.read()
    written = os.stat(made.panoptic_json).st_mtime_ns
    make_missing_synthetic(config)  # already there: nothing is written again
    assert os.stat(made.panoptic_json).st_mtime_ns == written


def test_configured_files_need_no_synthetic_data(tmp_path):
    config = DataConfig(train=SplitConfig(panoptic_json="train.json"),
                        val=SplitConfig(tfrecord_dir="val_records"),
                        synthetic_dir=str(tmp_path / "never"))
    make_missing_synthetic(config)
    assert not os.path.exists(tmp_path / "never")
