"""`python -m oanet_tf train`: train OANet with model.fit; resumes from --model-dir."""

from __future__ import annotations

from oanet_tf.cli.common import add_config_arguments, config_from_args
from oanet_tf.config import MIXED_PRECISIONS
from oanet_tf.training.strategy import STRATEGIES


def add_arguments(parser):
    add_config_arguments(parser)
    parser.add_argument("--model-dir", required=True,
                        help="where checkpoints, backups, TensorBoard logs and the resolved "
                             "config go; training resumes from it when it holds a backup")
    parser.add_argument("--strategy", default="auto", choices=STRATEGIES,
                        help="tf.distribute strategy (auto: mirrored over all GPUs when "
                             "several, else one device)")
    parser.add_argument("--mixed-precision", choices=MIXED_PRECISIONS, default=None,
                        help="mixed-precision policy (default: train.mixed_precision)")


def run(args) -> int:
    if args.mixed_precision:
        args.overrides.append(f"train.mixed_precision={args.mixed_precision}")
    config = config_from_args(args)
    from oanet_tf.training.trainer import train

    result = train(config, args.model_dir, args.strategy)
    print(f"trained model in {result.model_dir} (TensorBoard: tensorboard --logdir "
          f"{result.model_dir}/logs)")
    return 0
