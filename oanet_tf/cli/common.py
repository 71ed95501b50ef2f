"""Arguments shared by the commands that read a config."""

from __future__ import annotations

from oanet_tf.config import Config, load_config


def add_config_arguments(parser, default_config: str = "configs/synthetic.yaml"):
    parser.add_argument("--config", default=default_config,
                        help=f"YAML config file (default: {default_config})")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE",
                        help="override one config value, e.g. --set train.batch_size=8 "
                             "(repeatable; values in YAML syntax)")


def config_from_args(args) -> Config:
    return load_config(args.config, args.overrides)


def add_precision_argument(parser):
    """--precision of the commands that run a trained model dir (export, evaluate, predict)."""
    from oanet_tf.inference.trained_model import INFERENCE_POLICIES

    parser.add_argument("--precision", choices=tuple(INFERENCE_POLICIES), default="float32",
                        help="compute precision of the model's layers (default: float32; "
                             "bfloat16 is fast on CPUs with AMX and on recent GPUs); "
                             "post-processing and outputs stay float32")
