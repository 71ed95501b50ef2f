"""Connected components of a label map, in TensorFlow ops only (no tensorflow-addons), so that
a merge using them exports whole in a SavedModel.

Connectivity is 8 (pixels touching at a corner are one region), the convention of
cv2.connectedComponents and skimage.measure.label by default; panopticapi measures a segment
per class without any connectivity, and of the two neighbourhoods 8 keeps regions larger,
nearer that per-class measure.

Algorithm: every foreground pixel starts with its own flat index as label; each round takes
the smallest label among its 8 neighbours of the same class, then the smallest along its
horizontal and vertical runs of same-class pixels (one hop across a whole run), then follows
labels as pointers (a label is the index of a pixel of the same region with a smaller or equal
label). Labels only decrease and the loop stops when a round changes none: each region then
carries the flat index of its first pixel (row-major), as numpy would number them in order.
"""

from __future__ import annotations

import tensorflow as tf

BACKGROUND = -1  # component id of pixels outside the foreground
# The 8 neighbours (dy, dx) of a pixel.
NEIGHBOURS_8 = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))


def connected_components(classes, foreground):
    """8-connected regions of equal class among foreground pixels.

    classes [B, H, W] int, foreground [B, H, W] bool -> [B, H, W] int32: for each foreground
    pixel the flat index (into B * H * W) of the first pixel of its region, BACKGROUND
    elsewhere. Pixels of different images never join.
    """
    classes = tf.cast(classes, tf.int32)
    shape = tf.shape(classes)
    size = tf.reduce_prod(shape)
    labels = tf.where(foreground, tf.reshape(tf.range(size), shape), size)

    def one_round(labels):
        labels = _neighbour_min(labels, classes, foreground, size)
        labels = _run_min(labels, classes, foreground, size)
        labels = tf.transpose(_run_min(tf.transpose(labels, [0, 2, 1]),
                                       tf.transpose(classes, [0, 2, 1]),
                                       tf.transpose(foreground, [0, 2, 1]), size), [0, 2, 1])
        return _follow_pointers(labels, foreground, size)

    def body(labels, _):
        updated = one_round(labels)
        return updated, tf.reduce_any(tf.not_equal(updated, labels))

    labels, _ = tf.while_loop(lambda _, changed: changed, body, (labels, tf.constant(True)))
    return tf.where(foreground, labels, BACKGROUND)


def component_areas(components):
    """Pixels in each pixel's region: components [B, H, W] (connected_components) -> [B, H, W]
    int32, 0 on background."""
    size = tf.size(components)
    flat = tf.reshape(components, [-1])
    ids = tf.where(flat == BACKGROUND, size, flat)
    areas = tf.math.unsorted_segment_sum(tf.ones_like(ids), ids, size + 1)
    return tf.reshape(tf.where(flat == BACKGROUND, 0, tf.gather(areas, ids)),
                      tf.shape(components))


def _neighbour_min(labels, classes, foreground, size):
    """Each foreground pixel's label lowered to the smallest of its 8 same-class neighbours."""
    pad = [[0, 0], [1, 1], [1, 1]]
    padded_labels = tf.pad(labels, pad, constant_values=size)
    padded_classes = tf.pad(classes, pad)
    padded_foreground = tf.pad(foreground, pad)
    height, width = tf.shape(labels)[1], tf.shape(labels)[2]
    best = labels
    for dy, dx in NEIGHBOURS_8:
        def window(x):
            return x[:, 1 + dy:1 + dy + height, 1 + dx:1 + dx + width]
        joined = window(padded_foreground) & tf.equal(window(padded_classes), classes)
        best = tf.minimum(best, tf.where(joined, window(padded_labels), size))
    return tf.where(foreground, best, labels)


def _run_min(labels, classes, foreground, size):
    """Each foreground pixel's label lowered to the smallest along its horizontal run (the
    maximal row segment of foreground pixels of its class)."""
    batch, height, width = tf.shape(labels)[0], tf.shape(labels)[1], tf.shape(labels)[2]
    previous_class = tf.pad(classes[:, :, :-1], [[0, 0], [0, 0], [1, 0]])
    previous_foreground = tf.pad(foreground[:, :, :-1], [[0, 0], [0, 0], [1, 0]])
    starts = foreground & ~(previous_foreground & tf.equal(previous_class, classes))
    # Run k of row r is segment r * W + k; background pixels go to the last segment.
    row = tf.reshape(tf.range(batch * height), [batch, height, 1])
    runs = tf.where(foreground, row * width + tf.cumsum(tf.cast(starts, tf.int32), axis=2) - 1,
                    size)
    run_min = tf.math.unsorted_segment_min(tf.reshape(labels, [-1]), tf.reshape(runs, [-1]),
                                           size + 1)
    return tf.where(foreground, tf.gather(run_min, runs), labels)


def _follow_pointers(labels, foreground, size):
    """labels[p] <- labels[labels[p]] on foreground pixels (pointer jumping)."""
    flat = tf.concat([tf.reshape(labels, [-1]), [size]], axis=0)
    return tf.where(foreground, tf.gather(flat, labels), labels)
