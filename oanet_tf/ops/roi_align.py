"""RoIAlign (Mask R-CNN) with FPN level assignment, as gathers that compile with XLA.

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
"""

from __future__ import annotations

import tensorflow as tf

from oanet_tf.ops.iou import box_area

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
    num_boxes, channels = boxes.shape[1], flat.shape[-1]
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

    features: list of [B, H_l, W_l, C] for levels min_level, min_level + 1, ... (static H_l,
    W_l, stride 2^l); boxes [B, K, 4] pixels -> [B, K, S, S, C] in the features' dtype.
    method: "gather" (compiles with XLA) or "crop_and_resize" (faster without XLA); see the
    module docstring.
    """
    if method not in METHODS:
        raise ValueError(f"RoIAlign method must be one of {METHODS}, got {method!r}")
    _check_sampling(output_size, sampling_ratio)
    shapes = [tuple(f.shape[1:3]) for f in features]
    if any(d is None for shape in shapes for d in shape):
        raise ValueError(f"feature maps need static spatial shapes, got {shapes}")
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

    def table(values, dtype):  # a per-level constant looked up for every box -> [B, K]
        return tf.gather(tf.constant(values, dtype), level)

    return roi_align_flat(
        flat, table(starts, tf.int32), table([h for h, _ in shapes], tf.int32),
        table([w for _, w in shapes], tf.int32), boxes,
        table([2.0 ** -(min_level + i) for i in range(len(shapes))], tf.float32),
        output_size, sampling_ratio, aligned)


def _crop_and_resize(image, boxes, box_indices, crop_size: int):
    """Bilinear crops that back-propagate to the image only (the boxes are constants here,
    so the box gradient that TensorFlow's registered gradient always computes is skipped).

    image [N, H, W, C] float32, boxes [M, 4] normalised, box_indices [M]
    -> [M, crop_size, crop_size, C] float32.
    """

    @tf.custom_gradient
    def crop(image):
        def grad(upstream):
            return tf.raw_ops.CropAndResizeGradImage(
                grads=upstream, boxes=boxes, box_ind=box_indices,
                image_size=tf.shape(image), T=image.dtype)
        return tf.image.crop_and_resize(image, boxes, box_indices, [crop_size, crop_size],
                                        extrapolation_value=OUTSIDE_VALUE), grad

    return crop(image)


def _crop_boxes(boxes, scale: float, padded_height: float, padded_width: float,
                num_samples: int, aligned: bool):
    """crop_and_resize boxes whose corner samples are the first and last RoIAlign samples.

    boxes [M, 4] pixels on a level of stride 1 / scale -> [M, 4] in the coordinates of
    crop_and_resize on the padded level: (index + BORDER) / (padded size - 1).
    """
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    ys = (_sample_coordinates(y1, y2, scale, num_samples, aligned) + BORDER) / (
        padded_height - 1.0)
    xs = (_sample_coordinates(x1, x2, scale, num_samples, aligned) + BORDER) / (
        padded_width - 1.0)
    return tf.stack([ys[:, 0], xs[:, 0], ys[:, -1], xs[:, -1]], axis=-1)


def _crop_and_resize_roi_align(features, boxes, output_size: int, sampling_ratio: int,
                               min_level: int, aligned: bool):
    """multilevel_roi_align by one crop_and_resize per level (method="crop_and_resize").

    Computes in float32 whatever the features' dtype (crop_and_resize interpolates in float32
    and has no bfloat16 kernel; a float16 gradient would accumulate in float16).
    -> [B, K, S, S, C] in the features' dtype.
    """
    dtype = features[0].dtype
    boxes = tf.stop_gradient(tf.cast(boxes, tf.float32))
    batch, num_boxes = _dim(boxes, 0), _dim(boxes, 1)
    channels = features[0].shape[-1]
    n = output_size * sampling_ratio
    flat_boxes = tf.reshape(boxes, [-1, 4])
    image_index = tf.repeat(tf.range(batch, dtype=tf.int32), num_boxes)
    level = assign_levels(boxes, min_level, min_level + len(features) - 1) - min_level
    level = tf.reshape(level, [-1])
    positions = tf.dynamic_partition(tf.range(tf.size(level)), level, len(features))
    pooled = []
    for i, (feature, where) in enumerate(zip(features, positions)):
        padded = tf.pad(tf.cast(feature, tf.float32),
                        [[0, 0], [BORDER, BORDER], [BORDER, BORDER], [0, 0]], mode="SYMMETRIC")
        height, width = (float(d + 2 * BORDER) for d in feature.shape[1:3])
        crop_boxes = _crop_boxes(tf.gather(flat_boxes, where), 2.0 ** -(min_level + i),
                                 height, width, n, aligned)
        crops = _crop_and_resize(padded, crop_boxes, tf.gather(image_index, where), n)
        pooled.append(tf.nn.avg_pool2d(crops, sampling_ratio, sampling_ratio, "VALID"))
    merged = tf.dynamic_stitch(positions, pooled)  # [B * K, S, S, C]
    merged = tf.reshape(merged, [batch, num_boxes, output_size, output_size, channels])
    return tf.cast(merged, dtype)


def _dim(tensor, axis: int):
    """Static size of an axis when known, else the dynamic one."""
    return tensor.shape[axis] if tensor.shape[axis] is not None else tf.shape(tensor)[axis]
