"""`PanopticSegmenter`: images in, panoptic segmentations at their original sizes out, in one
call from Python (`oanet_tf.PanopticSegmenter`).

It runs the path `predict` and the SavedModel run: every image is sent encoded
(`ImagePredictor.from_encoded`, or a SavedModel's serving signature), so images of mixed sizes
share a batch, and the results are those of `predict` for the same files. Arrays and PIL images
are encoded as PNG (lossless); a file or encoded image with an EXIF orientation is turned
upright first, as training reads it.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pathlib
import re
import warnings

import numpy as np
from PIL import Image, ImageOps

from oanet_tf.config import MERGE_ORDERS
from oanet_tf.data.panoptic_format import IMAGE_READ_ERRORS, CategoryMap, id_to_rgb
from oanet_tf.errors import OANetError, graph_error_reason
from oanet_tf.inference import visualize

DEFAULT_BATCH_SIZE = 4
KERAS_EXTENSION = ".keras"
UPRIGHT = 1  # EXIF orientation of an image stored upright
ITEM_INDEX = re.compile(r"images\[(\d+)\]")  # how the graph's checks name a batch item


@dataclasses.dataclass(eq=False)  # arrays have no single truth value
class PanopticResult:
    """One image's panoptic segmentation.

    panoptic: int32 [h, w] segment ids at the image's original size (0 void).
    segments_info: COCO panoptic segments, one dict per segment: id, category_id,
    category_name, isthing, score (the detector's; 0 for stuff), ranking_score (the score the
    merge ordered instances by), area (pixels), bbox [x, y, w, h], iscrowd (0).
    """

    panoptic: np.ndarray
    segments_info: list
    categories: CategoryMap = dataclasses.field(repr=False)

    def to_coco_png(self) -> bytes:
        """The COCO panoptic PNG of the id map (id = R + 256 G + 256^2 B)."""
        buffer = io.BytesIO()
        Image.fromarray(id_to_rgb(self.panoptic)).save(buffer, format="PNG")
        return buffer.getvalue()

    def draw(self, image, min_side: int = 0) -> np.ndarray:
        """The segmentation over `image` (any input kind the segmenter takes): category
        colours, outlines and non-overlapping labels -> uint8 [H, W, 3]; with `min_side`, an
        image smaller than that is enlarged first so its labels have room."""
        pixels = to_pixels(image)
        if pixels.shape[:2] != self.panoptic.shape:
            raise OANetError(f"draw: the image is {pixels.shape[1]}x{pixels.shape[0]} pixels, "
                             f"the segmentation {self.panoptic.shape[1]}x"
                             f"{self.panoptic.shape[0]}: pass the image it was made from")
        return visualize.overlay(pixels, self.panoptic, self.segments_info, self.categories,
                                 min_side=min_side)


class PanopticSegmenter:
    """Call it on an image or a list of images -> a `PanopticResult` or a list of them.

    An image is a uint8 [H, W, 3] RGB array, a file path (str or pathlib.Path), a PIL image or
    the bytes of an encoded JPEG, PNG, GIF or BMP; a list may mix kinds and sizes.
    """

    def __init__(self, predictor_of, categories: CategoryMap, merge_order: str | None,
                 batch_size: int = DEFAULT_BATCH_SIZE):
        """predictor_of: merge order (None: the model's own) -> a function string [B] ->
        the post-processor's outputs; use the from_* constructors."""
        _check_batch_size(batch_size)
        self._predictor_of = predictor_of
        self._predictors = {}
        self.categories = categories
        self.merge_order = merge_order
        self.batch_size = batch_size
        self.precision = None  # a PrecisionChoice where the segmenter built the model

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_model_dir(cls, path, weights: str = "best", precision: str = "auto",
                       merge_order: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE):
        """A model dir written by `train` (or a `.keras` file). weights: "best" (the best
        weights, else the last ones, with a warning), "last" or a weights file. precision:
        "auto" (bfloat16 where the hardware computes it natively, else float32; the choice is
        kept as `segmenter.precision`), "float32" or "bfloat16"."""
        from oanet_tf.inference.trained_model import (BEST_WEIGHTS, load_trained_model)

        path = os.fspath(path)
        if path.endswith(KERAS_EXTENSION):
            return cls.from_keras_file(path, merge_order=merge_order, batch_size=batch_size)
        if weights == "best" and os.path.isdir(path) and not os.path.isfile(
                os.path.join(path, BEST_WEIGHTS)):
            warnings.warn(f"{path} has no {BEST_WEIGHTS} (it is written by evaluations during "
                          f"training): using the last weights", stacklevel=2)
            weights = "last"
        trained = load_trained_model(path, weights, precision=precision)
        segmenter = cls._of_model(trained.model, trained.categories, trained.config,
                                  merge_order, batch_size)
        segmenter.precision = trained.precision
        return segmenter

    @classmethod
    def from_keras_file(cls, path, categories: CategoryMap | None = None, config=None,
                        merge_order: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE):
        """A model saved with `model.save(PATH.keras)`; its categories and config come from
        the arguments, else from categories.json and config.yaml beside the file (the config
        falls back to the defaults)."""
        import keras

        from oanet_tf.config import load_config
        from oanet_tf.inference.trained_model import (CATEGORIES_FILE, CONFIG_FILE,
                                                      read_categories)

        path = os.fspath(path)
        if not os.path.isfile(path):
            raise OANetError(f"{path}: no such .keras file")
        folder = os.path.dirname(os.path.abspath(path))
        if categories is None:
            categories = read_categories(os.path.join(folder, CATEGORIES_FILE))
        if config is None:
            beside = os.path.join(folder, CONFIG_FILE)
            config = load_config(beside if os.path.isfile(beside) else None)
        model = keras.saving.load_model(path)
        return cls._of_model(model, categories, config, merge_order, batch_size)

    @classmethod
    def from_saved_model(cls, path, batch_size: int = DEFAULT_BATCH_SIZE):
        """A SavedModel written by `export` (e.g. saved_models/oanet/1), run through its
        serving signature: it merges in the order it was exported with."""
        serve, categories = load_saved_model(path)

        def predictor_of(order):
            if order is not None:
                raise OANetError(f"merge_order {order!r}: a SavedModel merges in the order "
                                 f"it was exported with (eval.merge_order at export)")
            return serve

        return cls(predictor_of, categories, None, batch_size)

    @classmethod
    def from_preset(cls, name_or_path, **kwargs):
        """A preset's name, or a local model dir or .keras file (`oanet_tf.presets`). A preset
        ships one weights file, its last: that is the default here (`weights=` as in
        from_model_dir)."""
        from oanet_tf import presets

        kwargs.setdefault("weights", "last")
        return cls.from_model_dir(presets.resolve_preset(name_or_path), **kwargs)

    @classmethod
    def _of_model(cls, model, categories, config, merge_order, batch_size):
        import tensorflow as tf

        from oanet_tf.inference.image_predictor import ImagePredictor

        def predictor_of(order):
            eval_config = dataclasses.replace(config.eval,
                                              merge_order=order or config.eval.merge_order)
            predictor = ImagePredictor(model, categories, config.data, eval_config,
                                       config.export.max_image_side)
            return tf.function(predictor.from_encoded,
                               input_signature=[tf.TensorSpec([None], tf.string)])

        _check_merge_order(merge_order)
        segmenter = cls(predictor_of, categories, merge_order, batch_size)
        segmenter.model = model
        return segmenter

    # ------------------------------------------------------------------ calling
    def __call__(self, images, batch_size: int | None = None, merge_order: str | None = None,
                 progress: bool | None = None):
        """An image -> a PanopticResult; a list (or tuple) of images -> a list of them.

        merge_order: "ranking" (the SRM), "detection" (the heuristic) or "product"; None for
        the segmenter's. progress: a tqdm bar over the batches; None shows it for a list of
        more than one batch."""
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        batch_size = batch_size or self.batch_size
        _check_batch_size(batch_size)
        _check_merge_order(merge_order)
        predict = self._predictor(merge_order or self.merge_order)
        results = []
        show = progress if progress is not None else len(items) > batch_size
        for start in _batches(len(items), batch_size, show):
            batch = items[start:start + batch_size]
            results += self._run(predict, [encode(item) for item in batch], batch, start)
        return results[0] if single else results

    def _predictor(self, order):
        if order not in self._predictors:
            self._predictors[order] = self._predictor_of(order)
        return self._predictors[order]

    def _run(self, predict, encoded: list, batch: list, start: int) -> list:
        """One batch of encoded images -> its results; a bad item -> an OANetError naming it."""
        import tensorflow as tf

        from oanet_tf.inference.postprocessor import image_segments

        try:
            outputs = {k: v.numpy() for k, v in predict(tf.constant(encoded)).items()}
        except tf.errors.InvalidArgumentError as err:
            reason = ITEM_INDEX.sub(lambda m: _describe(batch, start, int(m.group(1))),
                                    graph_error_reason(err.message))
            raise OANetError(reason) from None
        results = []
        for i in range(len(batch)):
            panoptic, segments = image_segments(outputs, i)
            results.append(PanopticResult(panoptic.astype(np.int32),
                                          self._named(segments), self.categories))
        return results

    def _named(self, segments: list) -> list:
        """image_segments' dicts with the category's name and isthing, in COCO's key order."""
        names = dict(zip([c["id"] for c in self.categories.categories], self.categories.names()))
        named = []
        for segment in segments:
            category_id = segment["category_id"]
            named.append({"id": segment["id"], "category_id": category_id,
                          "category_name": names[category_id],
                          "isthing": int(self.categories.is_thing(category_id)), **segment})
        return named


def load_saved_model(path) -> tuple:
    """A SavedModel written by `export` -> (its serving function: string [B] encoded images
    -> the post-processor's outputs, its CategoryMap), with TensorFlow's loader only."""
    import tensorflow as tf

    from oanet_tf.inference.image_predictor import CATEGORIES_SIGNATURE, IMAGES_SIGNATURE

    path = os.fspath(path)
    if not os.path.isdir(path):
        raise OANetError(f"{path}: no such SavedModel directory")
    loaded = tf.saved_model.load(path)
    info = {k: v.numpy() for k, v in loaded.signatures[CATEGORIES_SIGNATURE]().items()}
    categories = CategoryMap.from_categories([
        {"id": int(i), "name": n.decode(), "isthing": int(t), "color": c.tolist()}
        for i, n, t, c in zip(info["ids"], info["names"], info["isthing"], info["colors"])])
    serve = loaded.signatures[IMAGES_SIGNATURE]

    def serving(images):
        return serve(images=images)

    serving.loaded = loaded  # the signatures live as long as the loaded object
    return serving, categories


def encode(image) -> bytes:
    """One input image -> encoded bytes (arrays and PIL images as PNG; files and bytes as they
    are, unless an EXIF orientation asks to turn them)."""
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if not os.path.isfile(path):
            raise OANetError(f"{path}: no such image file")
        with open(path, "rb") as f:
            return _upright(f.read())
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _upright(bytes(image))
    return _png(to_pixels(image))


def to_pixels(image) -> np.ndarray:
    """One input image -> uint8 [H, W, 3] RGB, upright (EXIF orientation applied)."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise OANetError(f"an image array must be uint8 [H, W, 3] RGB, got "
                             f"{image.dtype} {list(image.shape)}")
        return image
    if isinstance(image, Image.Image):
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    if isinstance(image, (str, os.PathLike, bytes, bytearray, memoryview)):
        source = image if isinstance(image, (str, os.PathLike)) else io.BytesIO(bytes(image))
        try:
            with Image.open(source) as opened:
                return np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
        except IMAGE_READ_ERRORS as err:
            raise OANetError(f"{_name(image)}: cannot read the image ({err})") from None
    raise OANetError(f"an image must be a uint8 array, a file path, a PIL image or encoded "
                     f"bytes, got {type(image).__name__}")


def _upright(data: bytes) -> bytes:
    """Encoded bytes as they are, or re-encoded upright when their EXIF orientation turns
    them; bytes PIL cannot read pass through, for the graph's checks to name."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            turned = opened.getexif().get(0x0112, UPRIGHT) not in (UPRIGHT, None)
            if not turned:
                return data
            return _png(np.asarray(ImageOps.exif_transpose(opened).convert("RGB")))
    except IMAGE_READ_ERRORS:
        return data


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _name(image) -> str:
    return os.fspath(image) if isinstance(image, (str, pathlib.PurePath)) else "image bytes"


def _describe(batch: list, start: int, index: int) -> str:
    """How an error names batch item `index`: its place in the caller's list, and its path."""
    if not 0 <= index < len(batch):
        return f"images[{start + index}]"
    item = batch[index]
    path = f" ({os.fspath(item)})" if isinstance(item, (str, os.PathLike)) else ""
    return f"images[{start + index}]{path}"


def _batches(count: int, batch_size: int, progress: bool):
    starts = range(0, count, batch_size)
    if not progress:
        return starts
    import tqdm

    return tqdm.tqdm(starts, desc="segment", unit="batch")


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise OANetError(f"batch_size must be a positive integer, got {batch_size!r}")


def _check_merge_order(order):
    if order is not None and order not in MERGE_ORDERS:
        raise OANetError(f"merge_order {order!r}: must be one of {', '.join(MERGE_ORDERS)}")
