"""benchmarks/ on sys.path, as python puts it there for the entry scripts beside the harness
package, so that `import harness` finds it; and the tiny model as a config file and a
categories file, as the benchmarks take them."""

import os
import sys

import pytest
from tests.tiny_model import CATEGORIES, tiny_config

from oanet_tf.config import save_config
from oanet_tf.fileio import write_json

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCHMARKS = os.path.join(REPO, "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)


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
    from harness.model_bench import OursBench

    return OursBench(*tiny_files)
