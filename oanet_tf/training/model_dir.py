"""Read back what `train` wrote into a model dir: config, categories and weights; and write
its weights files."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import shutil

import numpy as np

from oanet_tf.config import Config, load_config
from oanet_tf.data.panoptic_format import CategoryMap
from oanet_tf.errors import ConfigError, OANetError
from oanet_tf.fileio import atomic_path, read_json

CONFIG_FILE = "config.yaml"
CATEGORIES_FILE = "categories.json"
LAST_WEIGHTS = "checkpoints/last.weights.h5"
BEST_WEIGHTS = "checkpoints/best.weights.h5"
BEST_RECORD = "checkpoints/best.json"  # the val_loss of the best weights and their step
WEIGHTS_ALIASES = {"last": LAST_WEIGHTS, "best": BEST_WEIGHTS}
# Inference precision -> Keras dtype policy. bfloat16 computes the layers in bfloat16 from the
# float32 weights, but for those of modeling/precision.py; the heads' outputs are cast to
# float32 before softmax, box decoding, NMS and the merge (README, "bfloat16 inference").
INFERENCE_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
# What a weights file takes beyond its numbers: HDF5 headers per variable (about 1.5 KB
# measured) and for the file.
H5_BYTES_PER_VARIABLE = 2048
H5_FILE_BYTES = 8192


@dataclasses.dataclass
class TrainedModel:
    config: Config
    categories: CategoryMap
    model: object  # OANet
    weights: str


def read_categories(path: str) -> CategoryMap:
    try:
        return CategoryMap.from_categories(read_json(path, "categories file"))
    except FileNotFoundError:
        raise OANetError(f"{path} not found: --model-dir must be a directory written by "
                         f"`python -m oanet_tf train`") from None
    except (ValueError, TypeError, KeyError) as err:
        raise OANetError(f"{path}: not a list of categories ({err})") from None


def check_categories_fit(model_dir: str, categories: CategoryMap):
    """Refuse to train into a model dir whose model has other categories: its weights,
    backups and files belong to another model."""
    path = os.path.join(model_dir, CATEGORIES_FILE)
    if not os.path.exists(path):
        return
    held = read_categories(path)
    if held.semantic_ids != categories.semantic_ids:
        raise OANetError(f"{path}: --model-dir holds a model of other categories "
                         f"({held.num_things} things, {held.num_stuff} stuff) than the "
                         f"training data ({categories.num_things} things, "
                         f"{categories.num_stuff} stuff); train into another --model-dir")


def weights_path(model_dir: str, weights: str = "last") -> str:
    """`last`, `best` or a path -> an existing weights file."""
    path = os.path.join(model_dir, WEIGHTS_ALIASES[weights]) if weights in WEIGHTS_ALIASES \
        else weights
    if not os.path.isfile(path):
        raise OANetError(f"weights file not found: {path} (--weights {weights})")
    return path


def load_config_of(model_dir: str, config_path: str | None = None, overrides=()) -> Config:
    if not os.path.isdir(model_dir):
        raise OANetError(f"--model-dir {model_dir}: no such directory")
    config_path = config_path or os.path.join(model_dir, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise ConfigError(f"{config_path} not found: --model-dir must be a directory written "
                          f"by `python -m oanet_tf train`, or pass --config")
    return load_config(config_path, list(overrides))


def load_trained_model(model_dir: str, weights: str = "last", config_path: str | None = None,
                       overrides=(), precision: str = "float32") -> TrainedModel:
    """Build OANet from the model dir's config and categories, computing in `precision`
    (INFERENCE_POLICIES; whatever precision it was trained in), and load its weights."""
    from oanet_tf.modeling.builder import build_oanet

    if precision not in INFERENCE_POLICIES:
        raise OANetError(f"precision {precision!r}: must be one of "
                         f"{', '.join(INFERENCE_POLICIES)}")
    config = load_config_of(model_dir, config_path, overrides)
    categories = read_categories(os.path.join(model_dir, CATEGORIES_FILE))
    path = weights_path(model_dir, weights)
    # The trained weights replace the backbone's start: nothing to read or download for it.
    with global_dtype_policy(INFERENCE_POLICIES[precision]):
        model = build_oanet(config.model, config.train, categories, load_backbone_weights=False)
    load_weights_into(model, path, f"backbone {config.model.backbone}, "
                                   f"{categories.num_things} things, {categories.num_stuff} stuff")
    return TrainedModel(config, categories, model, path)


@contextlib.contextmanager
def global_dtype_policy(name: str):
    """Keras' global dtype policy set to `name` while the block runs (layers keep the policy
    they were built with), then restored."""
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def load_weights_into(model, path: str, model_description: str):
    """model.load_weights(path); a file of another model -> an OANetError naming the file, the
    model (`model_description`) and Keras' reason."""
    try:
        model.load_weights(path)
    except (ValueError, OSError) as err:
        # Keras says what failed in its first two lines, then lists every layer.
        reason = " ".join([line.strip() for line in str(err).splitlines() if line.strip()][:2])
        raise OANetError(f"{path} does not fit the model of the config "
                         f"({model_description}): {reason}") from None


def save_weights(model, path: str):
    """`model.save_weights` (its optimizer's state included) into `path` through a temporary
    file beside it (`fileio.atomic_path`); an OS error (a full disk) names `path`.

    The space the file needs is checked first: h5py raises on a write that fails, but leaves
    HDF5 with a file it can neither write nor close, which crashes the interpreter at exit."""
    variables = list(model.weights)
    if getattr(model, "optimizer", None) is not None:
        variables += list(model.optimizer.variables)
    need = H5_FILE_BYTES + sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
                               + H5_BYTES_PER_VARIABLE for v in variables)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    free = shutil.disk_usage(directory).free
    if free < need:
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (the weights take about "
                                    f"{need / 1e6:.1f} MB, {free / 1e6:.1f} MB are free)", path)
    with atomic_path(path) as temp:
        model.save_weights(temp, overwrite=True)
