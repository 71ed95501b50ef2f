"""`python -m oanet_tf export`: a trained model dir -> a SavedModel for TF Serving.

The model dir is the one `python -m oanet_tf train` wrote: its config.yaml, categories.json
and checkpoints/. The SavedModel goes to EXPORT_DIR/VERSION, the layout TF Serving's
--model_base_path expects.
"""

from __future__ import annotations

import os

from oanet_tf.cli.common import add_precision_argument
from oanet_tf.errors import OANetError

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
    add_precision_argument(parser)


def run(args) -> int:
    from oanet_tf.inference.trained_model import load_config_of, load_trained_model

    if args.version < 0:
        raise OANetError(f"--version {args.version}: must be a non-negative integer")
    load_config_of(args.model_dir, args.config, args.overrides)  # fail fast on a bad dir
    trained = load_trained_model(args.model_dir, args.weights, args.config, args.overrides,
                                 args.precision)
    config = trained.config
    export_dir = os.path.join(args.export_dir or config.export.export_dir, str(args.version))
    from oanet_tf.export.saved_model import export_saved_model

    path = export_saved_model(trained.model, trained.categories, config.data, config.eval,
                              export_dir, config.export.max_image_side,
                              config.export.max_request_pixels)
    print(f"exported {trained.weights} ({trained.precision.precision}: "
          f"{trained.precision.reason}) to {path}")
    print(describe_signatures(path))
    print(f"serve it with: tensorflow_model_server --rest_api_port=8501 --model_name=oanet "
          f"--model_base_path={os.path.dirname(path)}")
    return 0


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
