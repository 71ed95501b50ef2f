"""The stuff branch of OANet (paper Figure 3) as one component: its head on P2..P5, its
semantic labels in either supervision mode (Table 2), its loss and the stuff probabilities
the panoptic merge reads."""

from __future__ import annotations

import keras
import tensorflow as tf

from oanet_tf.config import ALL_CATEGORIES, SEMANTIC_SUPERVISIONS, STUFF_PLUS_THINGS
from oanet_tf.data.panoptic_format import IGNORE_LABEL
from oanet_tf.modeling.stuff_head import StuffHead

STUFF_LEVELS = 4  # the head reads P2..P5
SEMANTIC_STRIDE = 4  # the head predicts at 1/4 of the input
THINGS_CLASS = 0  # with "stuff_plus_things", every thing category is this one class


@keras.saving.register_keras_serializable(package="oanet_tf")
class StuffBranch(keras.layers.Layer):
    """FPN maps -> semantic logits at 1/4 scale (`call`), their loss, stuff probabilities.

    supervision "all": one class per category, things first (object context, Table 2);
    "stuff_plus_things": one "things" class followed by the stuff classes.
    `loss_weight` is lambda of Eq. 1.
    """

    def __init__(self, *, num_things: int, num_stuff: int, channels: int, supervision: str,
                 loss_weight: float, **kwargs):
        super().__init__(**kwargs)
        if supervision not in SEMANTIC_SUPERVISIONS:
            raise ValueError(f"stuff supervision {supervision!r} is not one of "
                             f"{', '.join(SEMANTIC_SUPERVISIONS)}")
        self.num_things, self.num_stuff = int(num_things), int(num_stuff)
        self.channels = int(channels)
        self.supervision = supervision
        self.loss_weight = float(loss_weight)
        self.head = StuffHead(self.num_classes, self.channels, STUFF_LEVELS, name="head")

    @property
    def num_classes(self) -> int:
        """Semantic classes the head predicts."""
        if self.supervision == ALL_CATEGORIES:
            return self.num_things + self.num_stuff
        return self.num_stuff + 1

    @property
    def first_stuff_class(self) -> int:
        return self.num_things if self.supervision == ALL_CATEGORIES else THINGS_CLASS + 1

    def build(self, input_shapes):
        self.head.build(input_shapes[:STUFF_LEVELS])
        self.built = True

    def call(self, features):
        # [P2..P6] -> semantic logits [B, H/4, W/4, num_classes]
        return self.head(features[:STUFF_LEVELS])

    def labels(self, semantic):
        """semantic [B, H, W] (category index things first, IGNORE_LABEL) -> [B, H/4, W/4]
        int32 labels in the head's class layout, sampled at each cell's centre."""
        offset = SEMANTIC_STRIDE // 2
        labels = tf.cast(semantic[:, offset::SEMANTIC_STRIDE, offset::SEMANTIC_STRIDE], tf.int32)
        if self.supervision == STUFF_PLUS_THINGS:
            labels = tf.where(labels == IGNORE_LABEL, labels,
                              tf.where(labels < self.num_things, THINGS_CLASS,
                                       labels - self.num_things + self.first_stuff_class))
        return labels

    def loss(self, logits, semantic):
        """Softmax cross-entropy over the labelled cells: logits [B, H/4, W/4, C], semantic
        [B, H, W] -> scalar float32."""
        labels = self.labels(semantic)
        valid = labels != IGNORE_LABEL
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.where(valid, labels, 0), logits=tf.cast(logits, tf.float32))
        weights = tf.cast(valid, tf.float32)
        return tf.reduce_sum(ce * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)

    def probabilities(self, logits, canvas_size):
        """Stuff channels only, upsampled to the padded batch's canvas_size (H, W),
        softmax-normalised. logits [B, H/4, W/4, C] -> [B, H, W, num_stuff] float32"""
        first = self.first_stuff_class
        stuff = tf.cast(logits[..., first:first + self.num_stuff], tf.float32)
        stuff = tf.image.resize(stuff, canvas_size, method="bilinear")
        return tf.nn.softmax(stuff, axis=-1)

    def get_config(self):
        return {**super().get_config(), "num_things": self.num_things,
                "num_stuff": self.num_stuff, "channels": self.channels,
                "supervision": self.supervision, "loss_weight": self.loss_weight}
