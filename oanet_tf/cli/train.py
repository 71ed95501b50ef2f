"""`python -m oanet_tf train`: train OANet with model.fit; resumes from --model-dir (see
oanet_tf.training.trainer.train, and EPILOG for signals and exit codes)."""

from __future__ import annotations

from oanet_tf.cli.common import add_config_arguments, config_from_args
from oanet_tf.config import MIXED_PRECISIONS
from oanet_tf.training.strategy import STRATEGIES


EPILOG = ("SIGTERM or Ctrl-C stops training after the current step and writes a backup of it; "
          "a second one stops at once. Exit codes: 0 trained, 75 stopped by a signal with a "
          "backup (run the same command again to resume), 2 a user error (bad input, a model "
          "dir in use or that cannot be resumed), 130 Ctrl-C outside training or a second "
          "one, 1 an internal error.")


def add_arguments(parser):
    parser.epilog = EPILOG
    add_config_arguments(parser)
    parser.add_argument("--model-dir", required=True,
                        help="where checkpoints, backups, TensorBoard logs and the resolved "
                             "config go; training resumes from its backup, else from its "
                             "checkpoints/last, and refuses a model dir it cannot resume")
    parser.add_argument("--overwrite", action="store_true",
                        help="start a new model over what --model-dir holds: deletes its "
                             "backups, checkpoints and TensorBoard logs first")
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

    result = train(config, args.model_dir, args.strategy, overwrite=args.overwrite)
    print(f"trained model in {result.model_dir} (TensorBoard: tensorboard --logdir "
          f"{result.model_dir}/logs)")
    return 0
