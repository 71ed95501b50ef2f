"""Command line: `python -m oanet_tf COMMAND --help`.

Each command lives in `oanet_tf.cli.<name>` with `add_arguments(parser)` and `run(args)`;
modules are imported only when their command runs, and import TensorFlow only inside `run`:
`--help` of every command, `--version` and the light commands (pq, make-synthetic) start
without loading it (tests/test_main.py checks).

Every error ends here: a user error (bad input, a file that cannot be read or written) is one
line on stderr and exit code 2, anything else one line and exit code 1; `--debug` adds the
traceback. Ctrl-C is exit code 130; `train` stopped by SIGTERM or SIGINT after a step and its
backup is one line naming the step and exit code 75 (sysexits' EX_TEMPFAIL: run it again).
Run as a program (`program`: `python -m oanet_tf`, the `oanet-tf` script), the process then
ends at once, without the interpreter's shutdown: releasing what the error left behind (a
tf.data iterator, TensorFlow's worker threads after a failed allocation) can wait forever for
work that will never finish. Everything this package writes is complete or rolled back by then
(`oanet_tf.fileio`); only stdout, stderr and logging are left to flush.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import logging
import os
import sys
import traceback

from oanet_tf import __version__
from oanet_tf.errors import OANetError, TrainingStopped, failed_assertion

USER_ERROR, INTERNAL_ERROR, INTERRUPTED, STOPPED = 2, 1, 130, 75  # exit codes

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
    "convert": ("convert", "convert torchvision's Mask R-CNN weights into a model dir"),
}


def _available():
    found = {}
    for name, (module, help_text) in COMMANDS.items():
        if importlib.util.find_spec(f"oanet_tf.cli.{module}") is not None:
            found[name] = (module, help_text)
    return found


def build_parser(chosen: str | None = None) -> tuple[argparse.ArgumentParser, dict]:
    """The parser of the command line and {command: its module} for `chosen` alone: only the
    chosen command's module (and its imports) is loaded and given its arguments, so `--help`,
    `--version` and every `COMMAND --help` start without TensorFlow."""
    parser = argparse.ArgumentParser(prog="python -m oanet_tf", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"oanet_tf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for name, (module, help_text) in _available().items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--debug", action="store_true",
                       help="print the traceback of an error, not just its one-line message")
        if name == chosen:
            modules[name] = importlib.import_module(f"oanet_tf.cli.{module}")
            modules[name].add_arguments(p)
    return parser, modules


def main(argv=None) -> int:
    """Run a command in this process and return its exit code; after an error, what the
    exception held is released first (`program` ends the process instead)."""
    code, error = _run(argv)
    if error is not None:
        del error
        gc.collect()  # what the exception's frames held (tf.data iterators) goes now
    return code


def program() -> int:
    """The program's entry point: `main` on sys.argv, except that after an error the process
    ends as soon as its message is out (see the module's docstring)."""
    code, error = _run(None)
    if error is not None:  # held until the end: releasing it is what may hang
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _run(argv) -> tuple[int, BaseException | None]:
    """(exit code, the error or None) of the command line `argv` (None: sys.argv); the error
    has been printed."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info lines
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, modules = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return USER_ERROR, None
    try:
        return int(modules[args.command].run(args) or 0), None
    except (Exception, KeyboardInterrupt) as err:  # each leaves as one line and an exit code
        if args.debug:
            traceback.print_exc()
        code, message = describe_error(err)
        print(message if code == STOPPED else f"error: {message}", file=sys.stderr)
        return code, err


def describe_error(err: BaseException) -> tuple[int, str]:
    """(exit code, one line) of an error that reached the command line."""
    if isinstance(err, KeyboardInterrupt):
        return INTERRUPTED, "interrupted"
    if isinstance(err, TrainingStopped):
        return STOPPED, _one_line(str(err))
    if isinstance(err, OANetError):
        return USER_ERROR, _one_line(str(err))
    if isinstance(err, OSError):  # unreadable input, read-only or full disk, a folder for a file
        if err.filename is not None and err.strerror:
            return USER_ERROR, f"{err.filename}: {err.strerror}"
        return USER_ERROR, _one_line(str(err))
    tensorflow = sys.modules.get("tensorflow")
    if tensorflow is not None and isinstance(err, tensorflow.errors.InvalidArgumentError):
        checked = failed_assertion(err.message)  # a check of bad input inside a graph
        if checked is not None:
            return USER_ERROR, checked
    return INTERNAL_ERROR, (f"internal error, {type(err).__name__}: {_one_line(str(err))} "
                            f"(--debug prints the traceback)")


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(program())
