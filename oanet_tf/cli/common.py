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
    from oanet_tf.inference.precision import AUTO, PRECISION_CHOICES

    parser.add_argument("--precision", choices=PRECISION_CHOICES, default=AUTO,
                        help="compute precision of the model's layers (default: auto, "
                             "bfloat16 where the CPU has avx512_bf16 or amx_bf16 or every GPU "
                             "computes it natively, float32 elsewhere); post-processing and "
                             "outputs stay float32")


def print_precision(trained):
    """One line: the precision a loaded model computes in, and why."""
    choice = trained.precision
    print(f"precision: {choice.precision} ({choice.requested}: {choice.reason})", flush=True)
