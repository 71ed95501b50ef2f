"""RoIAlign (Mask R-CNN) with FPN level assignment: gathers that compile with XLA, or
crop_and_resize, which is faster without XLA.

Geometry of Detectron2's ROIAlign(aligned=True): a box is scaled to the feature map
(1 / stride) and shifted by -0.5, so that feature pixel i, which covers [i, i + 1) in
continuous coordinates, is sampled at its centre. The box is cut into S x S bins; each bin
averages sampling_ratio^2 bilinear samples at evenly spaced points (sample j of n = S *
sampling_ratio along an axis lies at start + (j + 0.5) * length / n). In feature index
space, a sample outside [-1, H] (or [-1, W]) contributes 0; one inside but beyond the outer
pixel centres takes the border value. The adaptive sampling ratio of Detectron2
(sampling_ratio=0) is not supported: it makes shapes depend on box sizes.

Two implementations compute the same values (up to float rounding), chosen by `method`:
- "gather" (default): the levels are flattened into one [B, sum H_l W_l, C] tensor (a copy
  of the pyramid) and every sample gathers its four neighbours. Static shapes, compiles with
  XLA. Cost: four gathers of [B, K * n * n, C] values, each pooled before it is added up;
  for 512 RoIs per image at 7 x 7, sampling 2, 256 channels: 25.7M values per corner and
  image (103 MB in float32), which XLA may fuse away.
- "crop_and_resize": the boxes are partitioned by level and each level runs one
  tf.image.crop_and_resize at n x n followed by an average pool of sampling_ratio x
  sampling_ratio. Several times faster without XLA, but the partition has data-dependent
  shapes and crop_and_resize has no XLA kernel, so it does not compile with jit_compile.
  crop_and_resize samples an evenly spaced grid whose first and last points are the box
  corners, in coordinates normalised by (size - 1), and returns extrapolation_value for
  points beyond the outer pixel centres. The border rule above is reproduced by padding
  each level with one replicated pixel on every side: in the padded map a sample at
  [-1, 0) (or (H - 1, H]) interpolates between two copies of the border pixel, and one
  beyond -1 (or H) falls outside and gets the extrapolation value 0. Only at exactly -1
  or H can rounding in crop_and_resize's own coordinate arithmetic flip a sample between
  the border value and 0.
  The gradient is not crop_and_resize's: TensorFlow's CPU kernel for it splits the boxes
  over threads that add into the same image unsynchronised, so overlapping boxes lose
  updates (tensorflow/tensorflow#42033; measured here: errors of 1.3 on gradients of 47),
  and its GPU kernel refuses op determinism. Instead the gradient is scattered with
  unsorted_segment_sum over the four bilinear taps of every sample, the taps and weights
  of the gather method, so it equals that method's gradient.
"""

from __future__ import annotations

import tensorflow as tf

from oanet_tf.ops.iou import box_area
from oanet_tf.ops.shapes import dim, dims

CANONICAL_LEVEL = 4  # FPN Eq. 1: a 224 x 224 box maps to P4
CANONICAL_SIZE = 224.0
LEVEL_EPSILON = 1e-8  # keeps log2 finite for empty boxes (Detectron2's value)
ALIGNED_OFFSET = 0.5  # pixel centres sit half a pixel inside their cell
METHODS = ("gather", "crop_and_resize")
BORDER = 1  # replicated pixels around each level for the crop_and_resize method
OUTSIDE_VALUE = 0.0  # what a sample beyond [-1, size] contributes


def assign_levels(boxes, min_level: int = 2, max_level: int = 5,
                  canonical_level: int = CANONICAL_LEVEL,
                  canonical_size: float = CANONICAL_SIZE):
    """FPN level of each box: floor(k0 + log2(sqrt(area) / 224)), clipped to the levels.

    boxes [B, K, 4] -> [B, K] int32 in [min_level, max_level].
    """
    size = tf.sqrt(box_area(tf.cast(boxes, tf.float32)))
    level = tf.floor(canonical_level + tf.math.log(size / canonical_size + LEVEL_EPSILON)
                     / tf.math.log(2.0))
    return tf.cast(tf.clip_by_value(level, min_level, max_level), tf.int32)


def _sample_coordinates(start, end, scale, num_samples: int, aligned: bool):
    """Sample positions along one axis in feature index space.

    start, end [B, K] pixels, scale [B, K] (1 / stride) -> [B, K, num_samples].
    """
    offset = ALIGNED_OFFSET if aligned else 0.0
    first = start * scale - offset
    length = (end - start) * scale
    if not aligned:  # Detectron2 (aligned=False) forces boxes to at least one pixel
        length = tf.maximum(length, 1.0)
    steps = (tf.range(num_samples, dtype=tf.float32) + 0.5) / num_samples
    return first[..., None] + steps * length[..., None]


def _taps(coords, size):
    """Bilinear neighbours of coords [B, K, n] on an axis of `size` pixels ([B, K] float).

    -> (low, high) int32 [B, K, n] and their weights (zero for samples outside [-1, size]).
    """
    size = size[..., None]
    inside = tf.cast((coords >= -1.0) & (coords <= size), tf.float32)
    clamped = tf.maximum(coords, 0.0)
    low = tf.minimum(tf.floor(clamped), size - 1.0)
    high = tf.minimum(low + 1.0, size - 1.0)
    frac = clamped - low  # when low == high both weights fall on the same (border) pixel
    return ((tf.cast(low, tf.int32), tf.cast(high, tf.int32)),
            ((1.0 - frac) * inside, frac * inside))


def _check_sampling(output_size: int, sampling_ratio: int):
    if output_size < 1 or sampling_ratio < 1:
        raise ValueError(f"output_size and sampling_ratio must be >= 1 (the adaptive ratio "
                         f"0 is not supported), got {output_size}, {sampling_ratio}")


def roi_align_flat(flat, region_start, region_height, region_width, boxes, scale,
                   output_size: int, sampling_ratio: int, aligned: bool = True,
                   dtype=None):
    """RoIAlign from images stored row-major in a flat tensor.

    flat [B, P, C] holds the images of each batch element one after another; box k of image b
    reads the image that starts at flat index region_start[b, k] and has region_height x
    region_width pixels (int32 [B, K] each). boxes [B, K, 4] in pixels are multiplied by
    scale ([B, K], 1 / stride). Values are computed in `dtype` (default: flat's dtype).
    -> [B, K, S, S, C], S = output_size.
    """
    _check_sampling(output_size, sampling_ratio)
    dtype = tf.as_dtype(dtype or flat.dtype)
    boxes = tf.stop_gradient(tf.cast(boxes, tf.float32))
    scale = tf.cast(scale, tf.float32)
    n = output_size * sampling_ratio
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    y_index, y_weight = _taps(_sample_coordinates(y1, y2, scale, n, aligned),
                              tf.cast(region_height, tf.float32))
    x_index, x_weight = _taps(_sample_coordinates(x1, x2, scale, n, aligned),
                              tf.cast(region_width, tf.float32))
    start = tf.cast(region_start, tf.int32)[..., None, None]
    row_stride = tf.cast(region_width, tf.int32)[..., None, None]
    batch = tf.shape(boxes)[0]
    num_boxes = dim(boxes, 1)
    channels = flat.shape[-1]
    pooled = 0.0
    for yi, wy in zip(y_index, y_weight):
        for xi, wx in zip(x_index, x_weight):
            index = start + yi[..., :, None] * row_stride + xi[..., None, :]  # [B, K, n, n]
            values = tf.gather(flat, tf.reshape(index, [batch, -1]), batch_dims=1)
            values = tf.reshape(tf.cast(values, dtype), [batch, num_boxes, n, n, channels])
            weight = tf.cast(wy[..., :, None] * wx[..., None, :], dtype)[..., None]
            weighted = tf.reshape(values * weight, [batch, num_boxes, output_size,
                                                    sampling_ratio, output_size,
                                                    sampling_ratio, channels])
            pooled += tf.reduce_mean(weighted, axis=[3, 5])
    return pooled


def multilevel_roi_align(features, boxes, output_size: int, sampling_ratio: int = 2,
                         min_level: int = 2, aligned: bool = True, method: str = "gather"):
    """RoIAlign of each box on its FPN level (assign_levels over the given levels).

    features: list of [B, H_l, W_l, C] for levels min_level, min_level + 1, ... (stride 2^l;
    H_l, W_l static or not); boxes [B, K, 4] pixels -> [B, K, S, S, C] in the features' dtype.
    method: "gather" (compiles with XLA) or "crop_and_resize" (faster without XLA); see the
    module docstring.
    """
    if method not in METHODS:
        raise ValueError(f"RoIAlign method must be one of {METHODS}, got {method!r}")
    _check_sampling(output_size, sampling_ratio)
    shapes = [tuple(dims(f)[1:3]) for f in features]
    if method == "crop_and_resize":
        return _crop_and_resize_roi_align(features, boxes, output_size, sampling_ratio,
                                          min_level, aligned)
    max_level = min_level + len(features) - 1
    channels = features[0].shape[-1]
    flat = tf.concat([tf.reshape(f, [tf.shape(f)[0], h * w, channels])
                      for f, (h, w) in zip(features, shapes)], axis=1)
    starts, offset = [], 0
    for h, w in shapes:
        starts.append(offset)
        offset += h * w
    level = assign_levels(boxes, min_level, max_level) - min_level  # [B, K]

    def table(values, dtype):  # a per-level value looked up for every box -> [B, K]
        return tf.gather(tf.cast(tf.stack(values), dtype), level)

    return roi_align_flat(
        flat, table(starts, tf.int32), table([h for h, _ in shapes], tf.int32),
        table([w for _, w in shapes], tf.int32), boxes,
        table([2.0 ** -(min_level + i) for i in range(len(shapes))], tf.float32),
        output_size, sampling_ratio, aligned)


def _level_roi_align(feature, boxes, image_index, scale: float, output_size: int,
                     sampling_ratio: int, aligned: bool):
    """RoIAlign of boxes on one level by crop_and_resize, with a scattered gradient.

    feature [N, H, W, C] float32, boxes [M, 4] pixels, image_index [M] int32, scale = 1 /
    stride -> [M, S, S, C] float32.
    """
    n = output_size * sampling_ratio
    height, width = (tf.cast(d, tf.float32) for d in dims(feature)[1:3])
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    ys = _sample_coordinates(y1, y2, scale, n, aligned)  # [M, n]
    xs = _sample_coordinates(x1, x2, scale, n, aligned)
    y_norm = (ys + BORDER) / (height + 2 * BORDER - 1.0)  # crop_and_resize on the padded map
    x_norm = (xs + BORDER) / (width + 2 * BORDER - 1.0)
    crop_boxes = tf.stack([y_norm[:, 0], x_norm[:, 0], y_norm[:, -1], x_norm[:, -1]], axis=-1)

    @tf.custom_gradient
    def pool(feature):
        padded = tf.pad(feature, [[0, 0], [BORDER, BORDER], [BORDER, BORDER], [0, 0]],
                        mode="SYMMETRIC")
        crops = tf.image.crop_and_resize(padded, crop_boxes, image_index, [n, n],
                                         extrapolation_value=OUTSIDE_VALUE)
        pooled = tf.nn.avg_pool2d(crops, sampling_ratio, sampling_ratio, "VALID")

        def grad(upstream):
            return _scatter_samples(upstream, ys, xs, image_index, tf.shape(feature),
                                    sampling_ratio)

        return pooled, grad

    return pool(feature)


def _scatter_samples(upstream, ys, xs, image_index, feature_shape, sampling_ratio: int):
    """Gradient of RoIAlign w.r.t. one level: every sample hands its bin's upstream value,
    divided by sampling_ratio^2, to its four bilinear taps (the gather method's taps).

    upstream [M, S, S, C], ys / xs [M, n] sample coordinates, image_index [M],
    feature_shape [4] = (N, H, W, C) -> [N, H, W, C].
    """
    batch, height, width, channels = tf.unstack(feature_shape)
    num_boxes, size = tf.shape(upstream)[0], upstream.shape[1]
    y_index, y_weight = _taps(ys, tf.fill([num_boxes], tf.cast(height, tf.float32)))
    x_index, x_weight = _taps(xs, tf.fill([num_boxes], tf.cast(width, tf.float32)))
    # Sample (i, j) lies in bin (i // sampling_ratio, j // sampling_ratio): broadcasting the
    # bins over [M, S, ratio, S, ratio] spreads them without copying the upstream first.
    per_bin = upstream[:, :, None, :, None, :] / float(sampling_ratio ** 2)
    y_shape = [num_boxes, size, sampling_ratio, 1, 1, 1]
    x_shape = [num_boxes, 1, 1, size, sampling_ratio, 1]
    start = (image_index * height * width)[:, None, None]
    grad = 0.0
    for yi, wy in zip(y_index, y_weight):
        for xi, wx in zip(x_index, x_weight):
            values = per_bin * (tf.reshape(wy, y_shape) * tf.reshape(wx, x_shape))
            rows = start + yi[:, :, None] * width + xi[:, None, :]  # [M, n, n]
            grad += tf.math.unsorted_segment_sum(tf.reshape(values, [-1, channels]),
                                                 tf.reshape(rows, [-1]),
                                                 batch * height * width)
    return tf.reshape(grad, feature_shape)


def _crop_and_resize_roi_align(features, boxes, output_size: int, sampling_ratio: int,
                               min_level: int, aligned: bool):
    """multilevel_roi_align by one crop_and_resize per level (method="crop_and_resize").

    Computes in float32 whatever the features' dtype (crop_and_resize interpolates in float32
    and has no bfloat16 kernel). -> [B, K, S, S, C] in the features' dtype.
    """
    dtype = features[0].dtype
    boxes = tf.stop_gradient(tf.cast(boxes, tf.float32))
    batch, num_boxes = dim(boxes, 0), dim(boxes, 1)
    channels = features[0].shape[-1]
    flat_boxes = tf.reshape(boxes, [-1, 4])
    image_index = tf.repeat(tf.range(batch, dtype=tf.int32), num_boxes)
    level = assign_levels(boxes, min_level, min_level + len(features) - 1) - min_level
    level = tf.reshape(level, [-1])
    positions = tf.dynamic_partition(tf.range(tf.size(level)), level, len(features))
    pooled = [_level_roi_align(tf.cast(feature, tf.float32), tf.gather(flat_boxes, where),
                               tf.gather(image_index, where), 2.0 ** -(min_level + i),
                               output_size, sampling_ratio, aligned)
              for i, (feature, where) in enumerate(zip(features, positions))]
    merged = tf.dynamic_stitch(positions, pooled)  # [B * K, S, S, C]
    merged = tf.reshape(merged, [batch, num_boxes, output_size, output_size, channels])
    return tf.cast(merged, dtype)
