"""Connected components of a label map, in TensorFlow ops only (no tensorflow-addons), so that
a merge using them exports whole in a SavedModel.

Connectivity is 8 (pixels touching at a corner are one region), the convention of
cv2.connectedComponents and skimage.measure.label by default; panopticapi measures a segment
per class without any connectivity, and of the two neighbourhoods 8 keeps regions larger,
nearer that per-class measure.

Algorithm: the pixels are first grouped into runs (maximal row segments of foreground pixels
of one class), numbered in row-major order; two runs in adjacent rows join when a pixel of one
touches a pixel of the other (edge or corner) with the same class, an edge found once per pair
and direction at the first column where they touch. The regions are then the connected
components of this graph of runs, far smaller than the pixel grid: roots hook onto the
smallest root they touch and pointers are followed until every run points to the smallest run
of its region (Shiloach-Vishkin). Each region carries the flat index of the first pixel of
its smallest run, its first pixel in row-major order, as numpy would number them in order.
"""

from __future__ import annotations

import tensorflow as tf

BACKGROUND = -1  # component id of pixels outside the foreground


def connected_components(classes, foreground):
    """8-connected regions of equal class among foreground pixels.

    classes [B, H, W] int, foreground [B, H, W] bool -> [B, H, W] int32: for each foreground
    pixel the flat index (into B * H * W) of the first pixel of its region, BACKGROUND
    elsewhere. Pixels of different images never join.
    """
    classes = tf.cast(classes, tf.int32)
    starts = _run_starts(classes, foreground)
    flat_starts = tf.reshape(starts, [-1])
    num_runs = tf.reduce_sum(tf.cast(flat_starts, tf.int32))
    # Run of each foreground pixel; background pixels point at an extra run num_runs.
    runs = tf.where(foreground,
                    tf.reshape(tf.cumsum(tf.cast(flat_starts, tf.int32)), tf.shape(classes)) - 1,
                    num_runs)
    first_pixels = tf.concat([tf.cast(tf.where(flat_starts)[:, 0], tf.int32), [BACKGROUND]], 0)
    upper, lower = _touching_runs(classes, foreground, starts, runs)
    smallest = _smallest_connected(upper, lower, num_runs + 1)
    return tf.gather(tf.gather(first_pixels, smallest), runs)


def component_areas(components):
    """Pixels in each pixel's region: components [B, H, W] (connected_components) -> [B, H, W]
    int32, 0 on background."""
    size = tf.size(components)
    flat = tf.reshape(components, [-1])
    ids = tf.where(flat == BACKGROUND, size, flat)
    areas = tf.math.unsorted_segment_sum(tf.ones_like(ids), ids, size + 1)
    return tf.reshape(tf.where(flat == BACKGROUND, 0, tf.gather(areas, ids)),
                      tf.shape(components))


def _run_starts(classes, foreground):
    """[B, H, W] bool: the foreground pixels that start a run, having no foreground pixel of
    their class on their left."""
    previous_class = tf.pad(classes[:, :, :-1], [[0, 0], [0, 0], [1, 0]])
    previous_foreground = tf.pad(foreground[:, :, :-1], [[0, 0], [0, 0], [1, 0]])
    return foreground & ~(previous_foreground & tf.equal(previous_class, classes))


def _touching_runs(classes, foreground, starts, runs):
    """The pairs of runs that touch across adjacent rows: [B, H, W] maps (runs: each pixel's
    run) -> upper, lower [E] int32 runs. A pair is listed once per direction (down-left, down,
    down-right): at the first column where it touches, where one of the two runs starts."""
    pad = [[0, 0], [0, 0], [1, 1]]  # one column either side: no neighbour beyond the borders
    below = [tf.pad(x[:, 1:], pad) for x in (classes, foreground, starts, runs)]
    width = tf.shape(classes)[2]
    upper, lower = [], []
    for dx in (-1, 0, 1):
        below_class, below_foreground, below_start, below_run = (
            x[:, :, 1 + dx:1 + dx + width] for x in below)
        touch = (foreground[:, :-1] & below_foreground
                 & tf.equal(classes[:, :-1], below_class))
        positions = tf.where(touch & (starts[:, :-1] | below_start))
        upper.append(tf.gather_nd(runs[:, :-1], positions))
        lower.append(tf.gather_nd(below_run, positions))
    return tf.concat(upper, 0), tf.concat(lower, 0)


def _smallest_connected(upper, lower, num_nodes):
    """The smallest node of each node's connected component in the graph of edges (upper[i],
    lower[i]) [E] int32 over nodes 0..num_nodes - 1 -> [num_nodes] int32.

    Each round follows the pointers to the roots, then hooks every root that an edge joins
    to a smaller root onto the smallest such; pointers only decrease, so the final root of a
    component is its smallest node.
    """
    def hook(parents, _):
        parents = _follow_pointers(parents)
        root_upper, root_lower = tf.gather(parents, upper), tf.gather(parents, lower)
        smaller = tf.math.unsorted_segment_min(tf.minimum(root_upper, root_lower),
                                               tf.maximum(root_upper, root_lower), num_nodes)
        return (tf.minimum(parents, smaller),
                tf.reduce_any(tf.not_equal(root_upper, root_lower)))

    parents, _ = tf.while_loop(lambda _, changed: changed, hook,
                               (tf.range(num_nodes), tf.constant(True)))
    return parents


def _follow_pointers(parents):
    """parents [N] int32 (each node's parent, the node itself at a root) -> each node's
    root, by pointer jumping."""
    def jump(parents, _):
        grandparents = tf.gather(parents, parents)
        return grandparents, tf.reduce_any(tf.not_equal(grandparents, parents))

    parents, _ = tf.while_loop(lambda _, changed: changed, jump, (parents, tf.constant(True)))
    return parents
