"""Command line: `python -m oanet_tf COMMAND --help`.

Each command lives in `oanet_tf.cli.<name>` with `add_arguments(parser)` and `run(args)`;
modules are imported only when their command runs, so light commands (pq, make-synthetic)
start without loading TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from oanet_tf.errors import OANetError

COMMANDS = {
    "demo": ("demo", "generate synthetic data, train, evaluate, export: the quick start"),
    "make-synthetic": ("make_synthetic", "write a synthetic COCO panoptic dataset"),
    "convert-tfrecords": ("convert_tfrecords",
                          "write one split of a COCO panoptic dataset as sharded TFRecords"),
    "pq": ("pq", "score COCO panoptic predictions against ground truth (Panoptic Quality)"),
    "train": ("train", "train OANet with model.fit"),
    "evaluate": ("evaluate", "predict a COCO-format dataset and report PQ"),
    "export": ("export", "export a SavedModel for TF Serving"),
    "predict": ("predict", "run a model on images, write COCO panoptic PNG + JSON + overlays"),
}


def _available():
    found = {}
    for name, (module, help_text) in COMMANDS.items():
        if importlib.util.find_spec(f"oanet_tf.cli.{module}") is not None:
            found[name] = (module, help_text)
    return found


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info lines
    commands = _available()
    parser = argparse.ArgumentParser(prog="python -m oanet_tf", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = argv[0] if argv else None
    for name, (module, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:  # only the chosen command's module (and its imports) is loaded
            modules[name] = importlib.import_module(f"oanet_tf.cli.{module}")
            modules[name].add_arguments(p)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(modules[args.command].run(args) or 0)
    except (OANetError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
