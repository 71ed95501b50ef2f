"""Fixtures of the hostile-input suite: the scene dataset of tests/data (a few 12x16 images)
written with a defect, a model dir of the tiny model with random weights for it, and `train`
of the tiny model run as a subprocess (signals, concurrent runs)."""

import os
import re
import subprocess
import sys
import threading
import time

import keras
import pytest
import tensorflow as tf

from oanet_tf.config import save_config
from oanet_tf.data.panoptic_format import CategoryMap
from oanet_tf.fileio import write_json
from oanet_tf.modeling.builder import build_oanet
from oanet_tf.inference.trained_model import CATEGORIES_FILE, CONFIG_FILE, LAST_WEIGHTS
from tests.data.scenes import CATEGORIES, _scene_image, _write_dataset
from tests.tiny_model import SYNTHETIC_CONFIG, TINY_MODEL, tiny_config

SCENE_CATEGORIES = CategoryMap.from_categories(CATEGORIES)
SCENE_IMAGES = 4


def write_scene(root, count=SCENE_IMAGES, **extra):
    """`count` scene images (ids 1..count) as a split under `root`; returns its SplitConfig."""
    return _write_dataset(str(root), [_scene_image(i, **extra) for i in range(1, count + 1)])


def split_overrides(split, name="val"):
    return [f"data.{name}.image_dir={split.image_dir}",
            f"data.{name}.panoptic_json={split.panoptic_json}",
            f"data.{name}.panoptic_dir={split.panoptic_dir}"]


@pytest.fixture(scope="session")
def scene_model_dir(tmp_path_factory):
    """A model dir as `train` writes it (tiny model, random weights, scene categories);
    returns (its path, its config)."""
    root = str(tmp_path_factory.mktemp("scene_model"))
    config = tiny_config("data.buckets=[]", "data.short_side=32", "data.max_side=32",
                         "train.batch_size=2")
    keras.utils.set_random_seed(0)
    model = build_oanet(config.model, config.train, SCENE_CATEGORIES)
    model.detect(tf.zeros((1, 32, 32, 3)))  # builds the heads
    os.makedirs(os.path.join(root, "checkpoints"))
    model.save_weights(os.path.join(root, LAST_WEIGHTS))
    save_config(config, os.path.join(root, CONFIG_FILE))
    write_json(os.path.join(root, CATEGORIES_FILE), list(SCENE_CATEGORIES.categories))
    return root, config


# ---------------------------------------------------------------- `train` as a subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 600
# The synthetic dataset of `synthetic_data` at 64 pixels, one epoch of `steps` steps, no
# backup or PQ evaluation of its own before the end.
SUBPROCESS_RUN = ["data.synthetic_size=[64, 64]", "data.short_side=64", "data.max_side=64",
                  "data.max_instances=8", "data.shuffle_buffer=8", "train.batch_size=2",
                  "train.reference_batch_size=2", "train.epochs=1",
                  "train.backup_every_steps=1000", "train.warmup_steps=2",
                  "train.log_every_steps=1000", "eval.min_stuff_area=16"]


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """A small synthetic dataset (16 train, 4 val images of 64x64): its folder."""
    from oanet_tf.data.synthetic import make_synthetic_dataset

    root = str(tmp_path_factory.mktemp("synthetic"))
    make_synthetic_dataset(root, 16, 4, 0, (64, 64), progress=False)
    return root


class TrainProcess:
    """`python -m oanet_tf train` of the tiny model on `synthetic_data`, this checkout's
    code, its output collected as it comes (Keras' progress lines name each step done)."""

    def __init__(self, model_dir, data_dir, steps: int):
        overrides = [*TINY_MODEL, *SUBPROCESS_RUN, f"data.synthetic_dir={data_dir}",
                     "data.synthetic_train=16", "data.synthetic_val=4",
                     f"train.steps_per_epoch={steps}"]
        env = {**os.environ, "PYTHONPATH": REPO, "PYTHONUNBUFFERED": "1",
               "TF_CPP_MIN_LOG_LEVEL": "3"}
        self.steps = steps
        self.process = subprocess.Popen(
            [sys.executable, "-m", "oanet_tf", "train", "--config", SYNTHETIC_CONFIG,
             "--model-dir", str(model_dir), *[a for o in overrides for a in ("--set", o)]],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        self._chunks = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for chunk in iter(lambda: self.process.stdout.read1(4096), b""):
            self._chunks.append(chunk)

    @property
    def output(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")

    def steps_done(self) -> int:
        """The highest step Keras' progress bar has shown (0 before the first)."""
        shown = re.findall(rf"(?<!\d)(\d+)/{self.steps}(?!\d)", self.output)
        return max([int(n) for n in shown], default=0)

    def wait_until(self, condition, what: str):
        deadline = time.monotonic() + TIMEOUT
        while not condition():
            if self.process.poll() is not None:
                self._reader.join(5)
                if condition():
                    return
                pytest.fail(f"train ended before {what}: {self.output[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {TIMEOUT} s: {self.output[-3000:]}")
            time.sleep(0.05)

    def finish(self) -> int:
        """Wait for the process to end -> its exit code (output complete)."""
        code = self.process.wait(TIMEOUT)
        self._reader.join(TIMEOUT)
        return code

    def kill(self):
        self.process.kill()
        self.finish()
