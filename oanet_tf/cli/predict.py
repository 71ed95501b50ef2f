"""`python -m oanet_tf predict`: images or a folder -> COCO panoptic PNG + JSON + overlays.

Runs either an exported SavedModel (`--saved-model`, the serving signature itself) or a
trained model dir (`--model-dir`, the same `ImagePredictor` in process), so both give the
results TF Serving would.
"""

from __future__ import annotations

import os

from oanet_tf.errors import OANetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
PREDICTIONS_JSON = "panoptic_predictions.json"


def add_arguments(parser):
    parser.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--saved-model", help="an exported SavedModel (e.g. saved_models/x/1)")
    source.add_argument("--model-dir", help="a directory written by `train`")
    parser.add_argument("--weights", default="last", help="with --model-dir: last, best, PATH")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--no-overlays", action="store_true", help="skip the overlay PNGs")


def list_images(inputs) -> list:
    """Files given, plus the images of the folders given (sorted); fails on a missing path."""
    found = []
    for path in inputs:
        if os.path.isdir(path):
            found += sorted(os.path.join(path, name) for name in os.listdir(path)
                            if name.lower().endswith(IMAGE_EXTENSIONS))
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise OANetError(f"no such image or folder: {path}")
    if not found:
        raise OANetError(f"no images found in {', '.join(inputs)}")
    return found


def _load_predictor(args):
    """-> (callable bytes [B] -> outputs dict, CategoryMap)."""
    import tensorflow as tf

    from oanet_tf.data.panoptic_format import CategoryMap

    if args.saved_model:
        if not os.path.isdir(args.saved_model):
            raise OANetError(f"--saved-model {args.saved_model}: no such directory")
        loaded = tf.saved_model.load(args.saved_model)
        info = {k: v.numpy() for k, v in loaded.signatures["categories"]().items()}
        categories = CategoryMap.from_categories([
            {"id": int(i), "name": n.decode(), "isthing": int(t), "color": c.tolist()}
            for i, n, t, c in zip(info["ids"], info["names"], info["isthing"], info["colors"])])
        serve = loaded.signatures["serving_default"]
        return (lambda images: serve(images=images)), categories

    from oanet_tf.inference.image_predictor import ImagePredictor
    from oanet_tf.training.model_dir import load_trained_model

    trained = load_trained_model(args.model_dir, args.weights)
    config = trained.config
    predictor = ImagePredictor(trained.model, trained.categories, config.data, config.eval,
                               config.export.max_image_side)
    return tf.function(predictor.from_encoded), trained.categories


def run(args) -> int:
    import tensorflow as tf
    import tqdm
    from PIL import Image

    from oanet_tf.data.coco_panoptic import read_image
    from oanet_tf.fileio import atomic_open
    from oanet_tf.inference.postprocessor import image_segments
    from oanet_tf.inference.visualize import overlay
    from oanet_tf.inference.writer import PanopticWriter

    files = list_images(args.inputs)
    predict, categories = _load_predictor(args)
    writer = PanopticWriter(os.path.join(args.out, PREDICTIONS_JSON),
                            os.path.join(args.out, "panoptic"), categories)
    overlay_dir = os.path.join(args.out, "overlays")
    os.makedirs(overlay_dir, exist_ok=True)
    for start in tqdm.trange(0, len(files), args.batch_size, desc="predict", unit="batch"):
        batch = files[start:start + args.batch_size]
        encoded = []
        for path in batch:
            with open(path, "rb") as f:
                encoded.append(f.read())
        try:
            outputs = {k: v.numpy() for k, v in predict(tf.constant(encoded)).items()}
        except tf.errors.InvalidArgumentError as err:
            raise OANetError(f"batch {batch}: {err.message.splitlines()[0]}") from None
        for i, path in enumerate(batch):
            panoptic, segments = image_segments(outputs, i)
            writer.add(start + i + 1, os.path.basename(path), panoptic, segments)
            if not args.no_overlays:
                picture = overlay(read_image(path), panoptic, segments, categories)
                name = os.path.splitext(os.path.basename(path))[0] + "_overlay.png"
                with atomic_open(os.path.join(overlay_dir, name), "wb") as f:
                    Image.fromarray(picture).save(f, format="PNG")
    print(f"{len(files)} images -> {writer.close()} (+ PNGs in {writer.out_dir}"
          f"{'' if args.no_overlays else ', overlays in ' + overlay_dir})")
    return 0
