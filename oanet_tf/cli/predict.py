"""`python -m oanet_tf predict`: images or a folder -> COCO panoptic PNG + JSON + overlays.

Runs either an exported SavedModel (`--saved-model`, the serving signature itself) or a
trained model dir (`--model-dir`, the same `ImagePredictor` in process), so both give the
results TF Serving would.

The outputs of a run form one set: they are written into a staging folder and swapped with
`--out` at the end (`fileio.staged_directory`), so a reader sees the previous set or the new
one, and a failed run leaves the previous set as it was. Each input gets its own PNG and
overlay, named by its base name; two inputs of one name are refused before anything runs.
"""

from __future__ import annotations

import argparse
import os

from oanet_tf.cli.common import add_precision_argument, print_precision
from oanet_tf.errors import OANetError, graph_error_reason

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
PREDICTIONS_JSON = "panoptic_predictions.json"
PANOPTIC_DIR, OVERLAY_DIR = "panoptic", "overlays"
OVERLAY_SUFFIX = "_overlay.png"


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def add_arguments(parser):
    parser.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--saved-model", help="an exported SavedModel (e.g. saved_models/x/1)")
    source.add_argument("--model-dir", help="a directory written by `train`")
    parser.add_argument("--weights", default="last", help="with --model-dir: last, best, PATH")
    parser.add_argument("--out", required=True,
                        help="output folder, replaced as a whole (new, or one predict wrote)")
    parser.add_argument("--batch-size", type=_positive, default=4)
    parser.add_argument("--no-overlays", action="store_true", help="skip the overlay PNGs")
    add_precision_argument(parser)


def list_images(inputs) -> list:
    """Files given, plus the images of the folders given (sorted); fails on a missing path."""
    found = []
    for path in inputs:
        if os.path.isdir(path):
            found += sorted(os.path.join(path, name) for name in os.listdir(path)
                            if name.lower().endswith(IMAGE_EXTENSIONS)
                            and os.path.isfile(os.path.join(path, name)))
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise OANetError(f"no such image or folder: {path}")
    if not found:
        raise OANetError(f"no images found in {', '.join(inputs)}")
    return found


def check_unique_names(files) -> list:
    """The PNG name of each file (`png_name_of`); two files of one name are refused."""
    from oanet_tf.inference.writer import png_name_of

    source_of = {}
    for path in files:
        name = png_name_of(path)
        if name in source_of:
            raise OANetError(f"{source_of[name]} and {path} would both be written as {name}: "
                             f"rename one or predict them in separate runs")
        source_of[name] = path
    return list(source_of)


def check_name_lengths(files, png_names, overlays: bool, out: str):
    """Each output name (PNG, overlay) fits the file system's name limit under `out`; an
    input whose name would not is refused before anything runs."""
    from oanet_tf.fileio import name_max

    limit = name_max(out)
    for path, png_name in zip(files, png_names):
        names = [png_name] + ([overlay_name(png_name)] if overlays else [])
        for name in names:
            if len(os.fsencode(name)) > limit:
                raise OANetError(f"{path}: its output {name} would take "
                                 f"{len(os.fsencode(name))} bytes, over the {limit} a file "
                                 f"name may take in {out}: rename the input"
                                 f"{' or pass --no-overlays' if name != png_name else ''}")


def overlay_name(png_name: str) -> str:
    return os.path.splitext(png_name)[0] + OVERLAY_SUFFIX


def check_out_folder(out: str):
    """`--out` is replaced as a whole: it must be new, empty or a previous output of predict."""
    if os.path.lexists(out) and not os.path.isdir(out):
        raise OANetError(f"--out {out}: exists and is not a folder")
    if (os.path.isdir(out) and os.listdir(out)
            and not os.path.isfile(os.path.join(out, PREDICTIONS_JSON))):
        raise OANetError(f"--out {out}: holds other files (no {PREDICTIONS_JSON}); predict "
                         f"replaces its output folder as a whole, so give a new folder")


def _load_predictor(args):
    """-> (callable bytes [B] -> outputs dict, CategoryMap)."""
    import tensorflow as tf

    from oanet_tf.inference.precision import AUTO
    from oanet_tf.segmenter import load_saved_model

    if args.saved_model:
        if args.precision != AUTO:
            raise OANetError(f"--precision {args.precision} goes with --model-dir; a SavedModel "
                             f"computes in the precision it was exported in (export --precision)")
        if not os.path.isdir(args.saved_model):
            raise OANetError(f"--saved-model {args.saved_model}: no such directory")
        return load_saved_model(args.saved_model)

    from oanet_tf.inference.image_predictor import ImagePredictor
    from oanet_tf.inference.trained_model import load_trained_model

    trained = load_trained_model(args.model_dir, args.weights, precision=args.precision)
    print_precision(trained)
    config = trained.config
    predictor = ImagePredictor(trained.model, trained.categories, config.data, config.eval,
                               config.export.max_image_side, config.export.max_request_pixels)
    return tf.function(predictor.from_encoded), trained.categories


def run(args) -> int:
    import tensorflow as tf
    import tqdm
    from PIL import Image

    from oanet_tf.data.coco_panoptic import read_image
    from oanet_tf.fileio import atomic_open, staged_directory
    from oanet_tf.inference.postprocessor import image_segments
    from oanet_tf.inference.visualize import overlay
    from oanet_tf.inference.writer import PanopticWriter

    files = list_images(args.inputs)
    png_names = check_unique_names(files)
    check_name_lengths(files, png_names, not args.no_overlays, args.out)
    check_out_folder(args.out)
    predict, categories = _load_predictor(args)
    with staged_directory(args.out) as staging:
        writer = PanopticWriter(os.path.join(staging, PREDICTIONS_JSON),
                                os.path.join(staging, PANOPTIC_DIR), categories)
        for start in tqdm.trange(0, len(files), args.batch_size, desc="predict", unit="batch"):
            batch = files[start:start + args.batch_size]
            encoded = []
            for path in batch:
                with open(path, "rb") as f:
                    encoded.append(f.read())
            try:
                outputs = {k: v.numpy() for k, v in predict(tf.constant(encoded)).items()}
            except tf.errors.InvalidArgumentError as err:
                raise OANetError(f"{', '.join(batch)}: {graph_error_reason(err.message)}") \
                    from None
            for i, path in enumerate(batch):
                panoptic, segments = image_segments(outputs, i)
                writer.add(start + i + 1, os.path.basename(path), panoptic, segments,
                           png_name=png_names[start + i])
                if not args.no_overlays:
                    picture = overlay(read_image(path), panoptic, segments, categories)
                    name = overlay_name(png_names[start + i])
                    with atomic_open(os.path.join(staging, OVERLAY_DIR, name), "wb") as f:
                        Image.fromarray(picture).save(f, format="PNG")
        writer.close()
    print(f"{len(files)} images -> {os.path.join(args.out, PREDICTIONS_JSON)} (+ PNGs in "
          f"{os.path.join(args.out, PANOPTIC_DIR)}"
          f"{'' if args.no_overlays else ', overlays in ' + os.path.join(args.out, OVERLAY_DIR)})")
    return 0
