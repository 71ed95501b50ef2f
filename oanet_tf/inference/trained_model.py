"""Load a trained model from a model dir: its config, categories and weights, read back into
an OANet that computes in the chosen precision. `predict`, `export`, `evaluate` and
`convert` load with it; the layout of a model dir (the files below) is defined here once, and
training, which writes them, imports it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os


from oanet_tf.config import Config, load_config
from oanet_tf.data.panoptic_format import CategoryMap
from oanet_tf.errors import ConfigError, OANetError
from oanet_tf.fileio import read_json
from oanet_tf.inference.precision import (AUTO, INFERENCE_POLICIES, PrecisionChoice,
                                          resolve_precision)

CONFIG_FILE = "config.yaml"
CATEGORIES_FILE = "categories.json"
LAST_WEIGHTS = "checkpoints/last.weights.h5"
BEST_WEIGHTS = "checkpoints/best.weights.h5"
BEST_RECORD = "checkpoints/best.json"  # the val_loss of the best weights and their step
WEIGHTS_ALIASES = {"last": LAST_WEIGHTS, "best": BEST_WEIGHTS}


@dataclasses.dataclass
class TrainedModel:
    config: Config
    categories: CategoryMap
    model: object  # OANet
    weights: str
    precision: PrecisionChoice | None = None  # what it computes in, and why


def read_categories(path: str) -> CategoryMap:
    try:
        return CategoryMap.from_categories(read_json(path, "categories file"))
    except FileNotFoundError:
        raise OANetError(f"{path} not found: --model-dir must be a directory written by "
                         f"`python -m oanet_tf train`") from None
    except (ValueError, TypeError, KeyError) as err:
        raise OANetError(f"{path}: not a list of categories ({err})") from None


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
                       overrides=(), precision: str = AUTO) -> TrainedModel:
    """Build OANet from the model dir's config and categories, computing in `precision`
    (PRECISION_CHOICES; whatever precision it was trained in), and load its weights."""
    from oanet_tf.modeling.builder import build_oanet

    choice = resolve_precision(precision)
    config = load_config_of(model_dir, config_path, overrides)
    categories = read_categories(os.path.join(model_dir, CATEGORIES_FILE))
    path = weights_path(model_dir, weights)
    # The trained weights replace the backbone's start: nothing to read or download for it.
    with global_dtype_policy(INFERENCE_POLICIES[choice.precision]):
        model = build_oanet(config.model, config.train, categories, load_backbone_weights=False)
    load_weights_into(model, path, f"backbone {config.model.backbone.name}, "
                                   f"{categories.num_things} things, {categories.num_stuff} stuff")
    return TrainedModel(config, categories, model, path, choice)


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
