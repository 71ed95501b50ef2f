"""The tiny model as a config file and a categories file, as the benchmarks take them."""

import pytest
from tests.tiny_model import CATEGORIES, tiny_config

from oanet_tf.config import save_config
from oanet_tf.fileio import write_json


@pytest.fixture(scope="package")
def tiny_files(tmp_path_factory):
    """(config path, categories path) of the tiny model."""
    root = tmp_path_factory.mktemp("tiny_bench")
    config, categories = str(root / "config.yaml"), str(root / "categories.json")
    save_config(tiny_config(), config)
    write_json(categories, list(CATEGORIES.categories))
    return config, categories


@pytest.fixture(scope="package")
def tiny_bench(tiny_files):
    """OursBench of the tiny model (no default size)."""
    from oanet_tf.benchmarking.model_bench import OursBench

    return OursBench(*tiny_files)
