"""Our model at one padded size, built from a config with random weights, and one prepared
call at a time: serve (the export's serving function, encoded JPEG in, merge at the original
size included), infer (PanopticPredictor: detect with the stuff branch and the SRM, then the
merge) or train (OANet.train_step compiled as model.fit compiles it)."""

from __future__ import annotations

import numpy as np

from oanet_tf.benchmarking.inputs import (encoded_jpeg, owner_labels, random_images,
                                          random_instances)
from oanet_tf.benchmarking.timing import interleaved

# serve: encoded JPEG bytes in, results out (ours: the export's serving function, with the
# panoptic merge at the original size; theirs: decode_jpeg + the model); infer: the model
# (and our merge) on decoded tensors; train: one training step.
MODES = ("serve", "infer", "train")
JIT_CHOICES = ("config", "auto", "true", "false")  # "config": the config's train.jit_compile
JIT_COMPILE = {"auto": "auto", "true": True, "false": False}


class OursBench:
    """Our model at one padded size, and one prepared call (`self.call`) at a time. The test
    score threshold is 0, as the peer's, so both run NMS on every candidate."""

    def __init__(self, config_path, categories_path, size, overrides=(), jit_compile="config"):
        import keras

        from oanet_tf.config import load_config
        from oanet_tf.data.panoptic_format import load_categories
        from oanet_tf.modeling.builder import build_oanet
        from oanet_tf.training.schedule import build_optimizer

        height, width = size
        self.categories = load_categories(categories_path)
        self.config = load_config(config_path, [
            f"data.padded_size=[{height}, {width}]", "model.test_score_threshold=0.0",
            *overrides])
        if jit_compile != "config":
            self.config.train.jit_compile = jit_compile
        keras.utils.set_random_seed(self.config.train.seed)
        self.model = build_oanet(self.config.model, self.config.train, self.categories,
                                 self.config.data.padded_size)
        self.model.compile(optimizer=build_optimizer(self.config.train),
                           jit_compile=JIT_COMPILE[self.config.train.jit_compile])
        self.size = (height, width)
        self.call = None
        self._train_step = None
        self._predictor = None

    @property
    def jit_compile(self):
        return bool(self.model.jit_compile)

    def predictor(self):
        from oanet_tf.inference.predictor import PanopticPredictor

        if self._predictor is None:
            self._predictor = PanopticPredictor(self.model, self.categories, self.config.eval)
        return self._predictor

    def serving_function(self):
        """The function behind the export's serving_default signature (string batch in)."""
        import tensorflow as tf

        from oanet_tf.inference.image_predictor import ImagePredictor

        predictor = ImagePredictor(self.model, self.categories, self.config.data,
                                   self.config.eval, self.config.export.max_image_side)
        return tf.function(predictor.from_encoded, reduce_retracing=True)

    def train_batch(self, batch, seed, instances):
        """A training batch in the layout of docs/ARCHITECTURE.md, random instances on one
        random stuff category per image."""
        import tensorflow as tf

        height, width = self.size
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
        return {"images": tf.constant(random_images(seed, batch, height, width)),
                "gt_boxes": tf.constant(padded(boxes)),
                "gt_classes": tf.constant(padded(classes)),
                "gt_masks": tf.constant(padded(masks)),
                "gt_count": tf.constant([instances] * batch, tf.int32),
                "semantic": tf.constant(semantic), "owner": tf.constant(owner),
                "image_id": tf.constant(np.arange(batch, dtype=np.int64)),
                "original_size": tf.constant(size), "image_size": tf.constant(size)}

    def prepare(self, mode, batch, seed, instances):
        """Sets self.call to one call of `mode` (MODES) on random inputs."""
        import tensorflow as tf

        height, width = self.size
        if mode == "serve":
            serve = self.serving_function()
            encoded = tf.constant([encoded_jpeg(seed, height, width)] * batch)

            def call():
                return serve(encoded)["num_segments"].numpy()
        elif mode == "infer":
            images = tf.constant(random_images(seed, batch, height, width))
            size = tf.constant(np.array([[height, width]] * batch, np.int32))
            predictor = self.predictor()

            def call():
                detections, _ = predictor(images, size, size)
                return detections["num_detections"].numpy()
        else:
            if self._train_step is None:
                self._train_step = tf.function(self.model.train_step, reduce_retracing=True,
                                               jit_compile=self.jit_compile)
            data = self.train_batch(batch, seed, instances)
            step = self._train_step

            def call():
                return float(step(data)["loss"])
        self.call = call

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
