"""Our model built from a config with random weights (it takes any input size, a multiple of
32), and one prepared call at a time: serve (the export's serving function, encoded JPEGs in,
merge at the original size included), infer (PanopticPredictor.panoptic: detect with the
stuff branch and the SRM, then the merge, its outputs as served) or train (OANet.train_step
traced as model.fit traces it, for batches of any image size)."""

from __future__ import annotations

import numpy as np

from harness.inputs import (encoded_jpeg, owner_labels, random_images,
                                          random_instances)
from harness.timing import interleaved
from oanet_tf.data.panoptic_format import IGNORE_LABEL

# serve: encoded JPEG bytes in, results out (ours: the export's serving function, with the
# panoptic merge at the original size; theirs: decode_jpeg + the model); infer: the model
# (and our merge) on decoded tensors; train: one training step.
MODES = ("serve", "infer", "train")
JIT_CHOICES = ("config", "auto", "true", "false")  # "config": the config's train.jit_compile
JIT_COMPILE = {"auto": "auto", "true": True, "false": False}
# The axes of a training batch's (height, width), of every key that has them: batches of the
# training pipeline have any size, so the train step is traced for any.
SPATIAL_AXES = {"images": (1, 2), "gt_masks": (2, 3), "semantic": (1, 2), "owner": (1, 2)}


class OursBench:
    """Our model and one prepared call (`self.call`) at a time. `size` (height, width): the
    size of the random images of `prepare` (the tensors' own size; None when every call is
    prepared from given inputs); with a size, the serving function keeps its JPEGs at it
    (data.short_side and max_side set to its sides, no buckets), as the peer's transform
    keeps them.
    The test score threshold is 0, as the peer's, so both run NMS on every candidate."""

    def __init__(self, config_path, categories_path, size=None, overrides=(),
                 jit_compile="config", precision="float32"):
        import keras

        from oanet_tf.config import load_config
        from oanet_tf.data.panoptic_format import load_categories
        from oanet_tf.modeling.builder import build_oanet
        from oanet_tf.inference.trained_model import INFERENCE_POLICIES, global_dtype_policy
        from oanet_tf.training.schedule import build_optimizer

        self.categories = load_categories(categories_path)
        keep_size = [f"data.short_side={min(size)}", f"data.max_side={max(size)}",
                     "data.buckets=[]"] if size else []
        self.config = load_config(
            config_path, ["model.roi_heads.test_score_threshold=0.0", *keep_size, *overrides])
        if jit_compile != "config":
            self.config.train.jit_compile = jit_compile
        keras.utils.set_random_seed(self.config.train.seed)
        # precision (model_dir.INFERENCE_POLICIES): bfloat16 trains and infers as
        # `train.mixed_precision: mixed_bfloat16` and `export --precision bfloat16` do.
        with global_dtype_policy(INFERENCE_POLICIES[precision]):
            self.model = build_oanet(self.config.model, self.config.train, self.categories)
        self.precision = precision
        self.model.compile(optimizer=build_optimizer(self.config.train),
                           jit_compile=JIT_COMPILE[self.config.train.jit_compile])
        self.size = tuple(size) if size else None
        self.call = None
        self._train_steps = {}  # any_size_spec -> the traced step
        self._predictor = None
        self._serve = None

    @property
    def jit_compile(self):
        return bool(self.model.jit_compile)

    def predictor(self):
        from oanet_tf.inference.predictor import PanopticPredictor

        if self._predictor is None:
            self._predictor = PanopticPredictor(self.model, self.categories, self.config.eval)
        return self._predictor

    def image_inputs(self):
        """The serving function's preprocessing alone (encoded images -> the model's padded
        pixels, image_size, original_size)."""
        from oanet_tf.inference.image_predictor import ImageInputs

        return ImageInputs(self.config.data, self.config.export.max_image_side)

    def serving_function(self):
        """The function behind the export's serving_default signature (string batch in)."""
        import tensorflow as tf

        from oanet_tf.inference.image_predictor import ImagePredictor

        predictor = ImagePredictor(self.model, self.categories, self.config.data,
                                   self.config.eval, self.config.export.max_image_side)
        return tf.function(predictor.from_encoded, reduce_retracing=True)

    def train_batch(self, batch, seed, instances, image_size=None, padded_size=None,
                    original_size=None):
        """A training batch in the layout of docs/ARCHITECTURE.md: random pixels and random
        instances on one random stuff category per image, at `image_size` (default
        self.size), zero-padded (void in the labels) to `padded_size` (default: no padding)
        as the training pipeline pads a batch; `original_size` (default image_size) is the
        files' size the batch claims."""
        import tensorflow as tf

        height, width = image_size or self.size
        padded_h, padded_w = padded_size or (height, width)
        if padded_h < height or padded_w < width:
            raise ValueError(f"padded size {padded_h}x{padded_w} is smaller than the image "
                             f"size {height}x{width}")
        things, stuff = self.categories.num_things, self.categories.num_stuff
        slots = self.config.data.max_instances
        boxes, classes, masks = random_instances(seed, batch, height, width, instances, things)
        rng = np.random.default_rng(seed + 2)
        background = things + rng.integers(0, stuff, size=(batch, 1, 1))
        owner = owner_labels(classes, masks)
        semantic = np.where(masks.any(axis=1), owner, background).astype(np.int32)
        pad = slots - instances

        def padded(array):
            return np.pad(array, [(0, 0), (0, pad)] + [(0, 0)] * (array.ndim - 2))

        size = np.array([[height, width]] * batch, np.int32)
        original = np.array([original_size or (height, width)] * batch, np.int32)
        arrays = {"images": random_images(seed, batch, height, width),
                  "gt_boxes": padded(boxes), "gt_classes": padded(classes),
                  "gt_masks": padded(masks), "gt_count": np.full([batch], instances, np.int32),
                  "semantic": semantic, "owner": owner,
                  "image_id": np.arange(batch, dtype=np.int64),
                  "original_size": original, "image_size": size}
        void = {"semantic": IGNORE_LABEL, "owner": IGNORE_LABEL}  # the rest pads with 0
        for key, (rows, cols) in SPATIAL_AXES.items():
            widths = [(0, 0)] * arrays[key].ndim
            widths[rows], widths[cols] = (0, padded_h - height), (0, padded_w - width)
            arrays[key] = np.pad(arrays[key], widths, constant_values=void.get(key, 0))
        return {key: tf.constant(value) for key, value in arrays.items()}

    def prepare_serve(self, encoded):
        """Sets self.call to the serving function (one for every batch: its traces are kept)
        on `encoded` (a list of image bytes)."""
        import tensorflow as tf

        if self._serve is None:
            self._serve = self.serving_function()
        serve = self._serve
        images = tf.constant(encoded)

        def call():
            return serve(images)["num_segments"].numpy()
        self.call = call

    def prepare_train(self, data):
        """Sets self.call to one train step on `data` (a training batch, train_batch's
        layout). The step is traced for any height and width, once per batch layout (at its
        first call), as model.fit traces it for the training pipeline's batches."""
        import tensorflow as tf

        spec = any_size_spec(data)
        key = tuple(sorted(spec.items()))
        if key not in self._train_steps:
            self._train_steps[key] = tf.function(self.model.train_step, input_signature=[spec],
                                                 jit_compile=self.jit_compile)
        step = self._train_steps[key]

        def call():
            return float(step(data)["loss"])
        self.call = call

    def prepare(self, mode, batch, seed, instances):
        """Sets self.call to one call of `mode` (MODES) on random inputs of self.size."""
        import tensorflow as tf

        height, width = self.size
        if mode == "serve":
            self.prepare_serve([encoded_jpeg(seed, height, width)] * batch)
        elif mode == "infer":
            images = tf.constant(random_images(seed, batch, height, width))
            size = tf.constant(np.array([[height, width]] * batch, np.int32))
            predictor = self.predictor()

            def call():  # the panoptic outputs, as served
                outputs = predictor.panoptic(images, size, size)
                return tf.nest.map_structure(lambda t: t.numpy(), outputs)
            self.call = call
        else:
            self.prepare_train(self.train_batch(batch, seed, instances))

    def merge_only(self, detections):
        """The post-processor on fixed `detections`: (images, image_size, original_size) ->
        its outputs; times the merge, the maps back at the original size and the segment
        tables without the model."""
        import tensorflow as tf

        from oanet_tf.inference.postprocessor import PanopticPostprocessor

        postprocessor = PanopticPostprocessor(self.categories, self.config.eval)
        return tf.function(lambda images, image_size, original_size: postprocessor(
            detections, image_size, original_size))


def time_against_peer(bench: OursBench, peer, mode, batch, seed, instances, warmup, repeats):
    """Prepare one case in ours and in the peer (a TorchClient, or None), then time them
    interleaved -> (ours seconds, peer seconds; [] without a peer)."""
    bench.prepare(mode, batch, seed, instances)
    peer_time = None
    if peer is not None:
        peer.prepare(mode, bench.size, batch, seed, instances, bench.categories.num_things)
        peer_time = peer.time
    return interleaved(bench.call, peer_time, warmup, repeats)


def resized_and_padded(data_config, original, batch=1):
    """((height, width) resized as data_config says, no jitter; (height, width) a batch of
    `batch` such images is padded to) by oanet_tf.data.image_sizes, as Python ints."""
    import tensorflow as tf

    from oanet_tf.data import image_sizes

    resized = tuple(int(v) for v in image_sizes.resized_size(*original, data_config))
    padded = image_sizes.padded_size(tf.constant([resized] * batch), data_config.buckets)
    return resized, tuple(int(v) for v in padded)


def any_size_spec(data: dict) -> dict:
    """The TensorSpecs of a training batch with its height and width unknown."""
    import tensorflow as tf

    specs = {}
    for key, value in data.items():
        shape = value.shape.as_list()
        for axis in SPATIAL_AXES.get(key, ()):
            shape[axis] = None
        specs[key] = tf.TensorSpec(shape, value.dtype, name=key)
    return specs
