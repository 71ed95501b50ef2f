"""A trained OANet as a SavedModel for TF Serving: images in, panoptic segmentations out.

Signatures (all self-contained: loading needs TensorFlow only, not oanet_tf):
  serving_default(images: string [B])        encoded JPEG or PNG (GIF, BMP too) of any size;
                                             grayscale and RGBA are converted to RGB.
  serving_tensor(images: uint8 [B, H, W, 3]) RGB pixels, one size for the whole batch.
  serving_png(images: string [B])            as serving_default, but each panoptic map comes
                                             as COCO panoptic PNG bytes (`panoptic_png_bytes`)
                                             instead of the dense `panoptic` output.
  categories()                               ids, names, isthing, colors of the categories.

The image signatures are `oanet_tf.inference.image_predictor.ImagePredictor`'s functions
(decoding, resizing as at evaluation, each batch padded to its own size rounded up to 32 or to
a `data.buckets` size, checks of bad input, `OANet.detect` and the eval config's
post-processing); their outputs are those of `oanet_tf.inference.postprocessor`: each panoptic
map at its original size with its segment table (ids, dataset category ids, is_thing, scores,
areas, boxes).

The PNG form is a signature of its own, not an output added to serving_default: TF Serving's
REST API returns every output of a signature (only gRPC can filter them), so an added output
would make each REST answer larger, not smaller; serving_default stays as existing clients
know it.
"""

from __future__ import annotations

import errno
import os

import tensorflow as tf
from keras.export import ExportArchive

from oanet_tf.config import DataConfig, EvalConfig, ExportConfig
from oanet_tf.data.panoptic_format import CategoryMap
from oanet_tf.fileio import staged_directory, write_json
from oanet_tf.inference.image_predictor import (CATEGORIES_SIGNATURE, IMAGES_SIGNATURE,
                                                INPUT_NAME, PNG_SIGNATURE, TENSOR_SIGNATURE,
                                                ImagePredictor)

CATEGORIES_ASSET = "categories.json"
ASSETS_DIR = "assets"
# Colors of categories that have none in the dataset: a fixed spread over the RGB cube.
COLOR_MULTIPLIERS = (73, 151, 211)
COLOR_LEVELS = 256
# TensorFlow's errors of a file write -> the OS error each stands for (ENOSPC is reported as
# RESOURCE_EXHAUSTED); any other is an I/O error.
WRITE_ERRNOS = ((tf.errors.ResourceExhaustedError, errno.ENOSPC),
                (tf.errors.PermissionDeniedError, errno.EACCES),
                (tf.errors.NotFoundError, errno.ENOENT))


def export_saved_model(model, categories: CategoryMap, data_config: DataConfig,
                       eval_config: EvalConfig, export_dir: str,
                       max_image_side: int = ExportConfig.max_image_side,
                       max_request_pixels: int = ExportConfig.max_request_pixels) -> str:
    """Write the SavedModel of `model` to `export_dir` and return its absolute path.

    The model is written to a staging folder beside `export_dir` and swapped into place when
    complete (`fileio.staged_directory`): an existing export is replaced only by a finished
    one, in one step on Linux, and what a killed export left there is deleted. The folder is
    readable by other users (0755 under the usual umask), as a TF Serving process needs.
    """
    predictor = ImagePredictor(model, categories, data_config, eval_config, max_image_side,
                               max_request_pixels)
    archive = ExportArchive()
    archive.track(model)
    archive.add_endpoint(IMAGES_SIGNATURE, predictor.from_encoded,
                         input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_NAME)])
    archive.add_endpoint(PNG_SIGNATURE, predictor.from_encoded_as_png,
                         input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_NAME)])
    archive.add_endpoint(TENSOR_SIGNATURE, predictor.from_pixels, input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.uint8, name=INPUT_NAME)])
    archive.add_endpoint(CATEGORIES_SIGNATURE, _categories_function(categories),
                         input_signature=[])

    export_dir = os.path.abspath(export_dir)
    with staged_directory(export_dir) as staging:
        try:
            archive.write_out(staging, verbose=False)
        except tf.errors.OpError as err:  # a full disk, a folder that cannot be written
            raise _write_error(err, export_dir) from None
        write_json(os.path.join(staging, ASSETS_DIR, CATEGORIES_ASSET),
                   [dict(c, color=_color(c)) for c in categories.categories], indent=2)
    return export_dir


def _write_error(err: tf.errors.OpError, export_dir: str) -> OSError:
    """The OSError naming `export_dir` of TensorFlow's error writing the SavedModel there."""
    code = next((code for kind, code in WRITE_ERRNOS if isinstance(err, kind)), errno.EIO)
    reason = err.message.strip().splitlines()[0] if err.message.strip() else type(err).__name__
    return OSError(code, f"cannot write the SavedModel ({reason})", export_dir)


def _color(category: dict) -> list:
    """The category's RGB color, or a fixed one derived from its id when it has none."""
    if "color" in category:
        return [int(c) for c in category["color"]]
    return [(int(category["id"]) * m) % COLOR_LEVELS for m in COLOR_MULTIPLIERS]


def _categories_function(categories: CategoryMap):
    """The categories signature: () -> ids int32 [C], names string [C], isthing bool [C],
    colors int32 [C, 3]."""
    cats = categories.categories

    def categories_table():
        return {"ids": tf.constant([c["id"] for c in cats], tf.int32),
                "names": tf.constant([c["name"] for c in cats], tf.string),
                "isthing": tf.constant([bool(c["isthing"]) for c in cats], tf.bool),
                "colors": tf.constant([_color(c) for c in cats], tf.int32)}

    return categories_table
