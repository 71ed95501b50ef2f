"""`python -m oanet_tf` with one more command, `fail-training DATA_ROOT MODEL_DIR`: `train` of
the tiny model on 32x32 synthetic images resized to 100000 pixels a side, so that the input
pipeline fails inside TensorFlow (an allocation of 116 GB for each image), as issue 27 found
it. The config is changed after loading, past the limits a loaded config sets. Run as a
subprocess, under a limit on its memory: the process must end once its error is printed (it
printed it, then waited forever).
"""

import importlib.machinery
import os
import sys
import types

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from oanet_tf import __main__ as cli  # noqa: E402

MODULE = "oanet_tf.cli.failing_training"
SIDE = 100_000


def add_arguments(parser):
    parser.add_argument("data_root", help="where the synthetic dataset is written")
    parser.add_argument("model_dir")


def run(args):
    from oanet_tf.data.synthetic import make_synthetic_dataset
    from oanet_tf.training.trainer import train
    from tests.tiny_model import tiny_config

    config = tiny_config(f"data.synthetic_dir={args.data_root}", "data.synthetic_train=4",
                         "data.synthetic_val=2", "data.synthetic_size=[32, 32]",
                         "data.buckets=[]", "train.batch_size=2", "train.epochs=1",
                         "train.steps_per_epoch=1")
    config.data.short_side = config.data.max_side = SIDE
    data = config.data  # the synthetic data is made explicitly, as `make-synthetic` does
    make_synthetic_dataset(data.synthetic_dir, data.synthetic_train, data.synthetic_val,
                           data.synthetic_seed, tuple(data.synthetic_size), progress=False)
    train(config, args.model_dir, verbose=0)


command = types.ModuleType(MODULE)
command.__spec__ = importlib.machinery.ModuleSpec(MODULE, None)
command.add_arguments, command.run = add_arguments, run
sys.modules[MODULE] = command
cli.COMMANDS["fail-training"] = (MODULE.rsplit(".", 1)[1], "training whose input fails")
sys.exit(cli.program())
