"""`python -m oanet_tf export`: a trained model dir -> a SavedModel for TF Serving.

The model dir is the one `python -m oanet_tf train` wrote: its config.yaml, categories.json
and checkpoints/. The SavedModel goes to EXPORT_DIR/VERSION, the layout TF Serving's
--model_base_path expects.
"""

from __future__ import annotations

import os

from oanet_tf.config import load_config
from oanet_tf.errors import ConfigError, OANetError

WEIGHTS_ALIASES = ("last", "best")
SAVED_MODEL_FILE = "saved_model.pb"
INTERNAL_PREFIX = "__"  # signatures TensorFlow adds for itself (__saved_model_init_op)


def add_arguments(parser):
    parser.add_argument("--model-dir", required=True,
                        help="directory written by `python -m oanet_tf train` (config.yaml, "
                             "categories.json, checkpoints/)")
    parser.add_argument("--weights", default="last",
                        help="last, best, or the path of a .weights.h5 file (default: last)")
    parser.add_argument("--export-dir", default=None,
                        help="base directory of the export (default: export.export_dir of "
                             "the config); the SavedModel is written to EXPORT_DIR/VERSION")
    parser.add_argument("--version", type=int, default=1,
                        help="model version, the subdirectory TF Serving loads (default: 1)")
    parser.add_argument("--config", default=None,
                        help="YAML config (default: MODEL_DIR/config.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE",
                        help="override one config value, e.g. --set eval.merge_order=detection "
                             "(repeatable; values in YAML syntax)")


def run(args) -> int:
    from oanet_tf.training import trainer

    model_dir = args.model_dir
    if not os.path.isdir(model_dir):
        raise OANetError(f"--model-dir {model_dir}: no such directory")
    config_path = args.config or os.path.join(model_dir, trainer.CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise ConfigError(f"{config_path} not found: --model-dir must be a directory written "
                          f"by `python -m oanet_tf train`, or pass --config")
    if args.version < 0:
        raise OANetError(f"--version {args.version}: must be a non-negative integer")
    config = load_config(config_path, args.overrides)
    categories = _read_categories(os.path.join(model_dir, trainer.CATEGORIES_FILE))
    weights = _weights_path(model_dir, args.weights, trainer)
    export_dir = os.path.join(args.export_dir or config.export.export_dir, str(args.version))

    model = _load_model(config, categories, weights)
    from oanet_tf.export.saved_model import export_saved_model

    path = export_saved_model(model, categories, config.data, config.eval, export_dir,
                              config.export.max_image_side)
    print(f"exported {weights} to {path}")
    print(describe_signatures(path))
    print(f"serve it with: tensorflow_model_server --rest_api_port=8501 --model_name=oanet "
          f"--model_base_path={os.path.dirname(path)}")
    return 0


def _read_categories(path: str):
    from oanet_tf.data.panoptic_format import CategoryMap
    from oanet_tf.fileio import read_json

    try:
        return CategoryMap.from_categories(read_json(path, "categories file"))
    except FileNotFoundError:
        raise OANetError(f"{path} not found: --model-dir must be a directory written by "
                         f"`python -m oanet_tf train`") from None
    except (ValueError, TypeError, KeyError) as err:
        raise OANetError(f"{path}: not a list of categories ({err})") from None


def _weights_path(model_dir: str, weights: str, trainer) -> str:
    aliases = dict(zip(WEIGHTS_ALIASES, (trainer.LAST_WEIGHTS, trainer.BEST_WEIGHTS)))
    path = os.path.join(model_dir, aliases[weights]) if weights in aliases else weights
    if not os.path.isfile(path):
        raise OANetError(f"weights file not found: {path} (--weights {weights})")
    return path


def _load_model(config, categories, weights: str):
    """Build OANet from the config and load `weights`; every layer is built first (the RoI
    heads and the SRM are built by their first call)."""
    import tensorflow as tf

    from oanet_tf.modeling.builder import build_oanet

    model = build_oanet(config.model, config.train, categories, config.data.padded_size)
    model.detect(tf.zeros((1,) + tuple(config.data.padded_size) + (3,), tf.float32))
    try:
        model.load_weights(weights)
    except (ValueError, OSError) as err:
        # Keras says what failed in its first two lines, then lists every layer.
        reason = " ".join([line.strip() for line in str(err).splitlines() if line.strip()][:2])
        raise OANetError(f"{weights} does not fit the model of the config "
                         f"(backbone {config.model.backbone}, {categories.num_things} things, "
                         f"{categories.num_stuff} stuff): {reason}") from None
    return model


def describe_signatures(path: str) -> str:
    """One line per input and output of every signature of the SavedModel at `path`, read
    from its saved_model.pb (as `saved_model_cli show` does, without loading the model)."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(path, SAVED_MODEL_FILE), "rb") as f:
        saved_model.ParseFromString(f.read())
    lines = []
    for name, signature in sorted(saved_model.meta_graphs[0].signature_def.items()):
        if name.startswith(INTERNAL_PREFIX):
            continue
        lines.append(f"signature {name}:")
        for kind, tensors in (("input ", signature.inputs), ("output", signature.outputs)):
            for key, info in sorted(tensors.items()):
                shape = tuple(d.size if d.size >= 0 else None for d in info.tensor_shape.dim)
                lines.append(f"  {kind} {key}: {tf.dtypes.as_dtype(info.dtype).name} {shape}")
    return "\n".join(lines)
