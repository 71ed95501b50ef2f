"""The SRM layer of OANet (paper section 3.2) and the arithmetic around it: instance masks
drawn into its input, and the ranking scores of Eq. 3 read from its output.

Instance masks are drawn into a tensor with one channel per thing category (1 where an
instance of that category has its mask, `srm_inputs`); the layer's convolution turns it into
per-pixel ranking logits whose softmax over channels is the ranking score map S. The ranking
score of an instance is the mean of S[:, :, its class] over its mask (Eq. 3,
`ranking_scores`), and instances are merged in that order. The component that owns the layer,
picks its path and computes its loss (Eq. 2) is `spatial_ranking.SpatialRanking`.

Two ways to compute the logits, equal up to float rounding: every pixel (`call`, static
shapes for XLA), or only the cells that are read (`logits_at`, `covered_score_map`), with the
first convolutions over the categories present.

Resolution: with `stride` s > 1 the layer works at 1/s of the input. Its input is
average-pooled (each cell holds the fraction of its s x s pixels covered by the category, so
small instances do not vanish), and Eq. 3 weights each cell by the fraction of the mask inside
it, which equals the mask mean of S upsampled by pixel replication.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from oanet_tf.config import GCN_KERNEL, KERNEL_3X3, SRM_KERNELS
from oanet_tf.ops.mask_ops import MASK_THRESHOLD  # a mask probability >= this is inside
from oanet_tf.ops.shapes import dims

# Above this fraction of covered cells the score map is computed everywhere instead of on
# gathered cells (the crossing point was measured before the first convolutions moved onto
# the gathered cells too; docs/benchmarks.md, the ops suite's "SRM score map" row).
SPARSE_MAX_COVERED = 0.4


@keras.saving.register_keras_serializable(package="oanet_tf")
class SpatialRankingModule(keras.layers.Layer):
    """Thing-channel tensor -> ranking logits, one channel per thing category.

    kernel "gcn": the large-kernel convolution of Peng et al. (CVPR 2017), a (k x 1) conv then
    a (1 x k) conv plus a (1 x k) conv then a (k x 1) conv, summed; every conv has
    `num_things` output channels (as in the paper's GCN, which predicts the classes directly),
    'same' padding, no activation in between, and a bias only on the second conv of each path
    (a bias on the first would be absorbed by the second). kernel "3x3" / "1x1": one conv of
    that size (`kernel_size` is then unused). With `stride` > 1 the input is average-pooled by
    `stride` first; the input height and width must be multiples of `stride`.
    """

    def __init__(self, num_things: int, kernel: str, kernel_size: int, stride: int, **kwargs):
        super().__init__(**kwargs)
        if kernel not in SRM_KERNELS:
            raise ValueError(f"SRM kernel {kernel!r} is not one of {', '.join(SRM_KERNELS)}")
        if int(kernel_size) != kernel_size or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"SRM kernel_size must be a positive odd integer, got "
                             f"{kernel_size!r}")
        if int(stride) != stride or stride < 1:
            raise ValueError(f"SRM stride must be a positive integer, got {stride!r}")
        if int(num_things) != num_things or num_things < 1:
            raise ValueError(f"SRM num_things must be a positive integer, got {num_things!r}")
        self.num_things = int(num_things)
        self.kernel = kernel
        self.kernel_size = int(kernel_size)
        self.stride = int(stride)
        policy = self.dtype_policy  # sublayers follow this layer's (mixed) precision
        self.pool = (keras.layers.AveragePooling2D(self.stride, self.stride, name="pool",
                                                   dtype=policy)
                     if self.stride > 1 else None)
        k, t = self.kernel_size, self.num_things

        def conv(size, name, use_bias=True):
            return keras.layers.Conv2D(t, size, padding="same", use_bias=use_bias, name=name,
                                       dtype=policy)

        if kernel == GCN_KERNEL:
            self.convs = [conv((k, 1), "left_kx1", use_bias=False), conv((1, k), "left_1xk"),
                          conv((1, k), "right_1xk", use_bias=False), conv((k, 1), "right_kx1")]
        else:
            size = 3 if kernel == KERNEL_3X3 else 1
            self.convs = [conv(size, f"conv{kernel}")]

    def build(self, input_shape):
        if input_shape[-1] != self.num_things:
            raise ValueError(f"SRM {self.name}: input has {input_shape[-1]} channels, expected "
                             f"one per thing category ({self.num_things})")
        for axis, size in (("height", input_shape[1]), ("width", input_shape[2])):
            if size is not None and size % self.stride:
                raise ValueError(f"SRM {self.name}: input {axis} {size} is not a multiple of "
                                 f"the stride {self.stride}")
        shape = self.compute_output_shape(input_shape)
        for conv in self.convs:
            conv.build(shape)
        self.built = True

    def call(self, channels):
        # channels [B, H, W, T] (0/1) -> ranking logits [B, H/stride, W/stride, T]
        x = self.pool(channels) if self.pool is not None else channels
        if self.kernel != GCN_KERNEL:
            return self.convs[0](x)
        left_kx1, left_1xk, right_1xk, right_kx1 = self.convs
        return left_1xk(left_kx1(x)) + right_kx1(right_1xk(x))

    def logits_at(self, channels, cells):
        """The ranking logits at chosen cells only, equal to `tf.gather_nd(self(channels),
        cells)` at a fraction of the cost when the cells are few (the conflicting pixels the
        loss reads) or few categories are present.

        Two exact savings: the first convolutions read only the categories present in
        `channels` (an absent one is zero everywhere and adds nothing), and the last
        convolution of each path runs on the gathered neighbourhoods of `cells` alone. Shapes
        follow the data, so this is for graphs that XLA does not compile.

        channels [B, H, W, T] (0/1), cells [N, 3] int (batch, row, column on the output grid)
        -> logits [N, T] in the compute dtype.
        """
        x, present = self._present_inputs(channels)
        return self._logits_at(x, present, cells)

    def present_logits_at(self, channels, present, cells):
        """`logits_at` on the input channels `present` [P] int32 alone (the others are zero):
        channels [B, H, W, P] (0/1) -> logits [N, T] in the compute dtype."""
        return self._logits_at(self._pooled(channels), present, cells)

    def _pooled(self, channels):
        """channels [B, H, W, C] -> the convolutions' input [B, h, w, C], compute dtype."""
        x = self.pool(channels) if self.pool is not None else channels
        return tf.cast(x, self.compute_dtype)

    def _present_inputs(self, channels):
        """The (pooled) input restricted to the categories present.
        channels [B, H, W, T] -> x [B, h, w, P] in the compute dtype, present [P] int32"""
        x = self._pooled(channels)
        present = _present_categories(x)
        return tf.gather(x, present, axis=-1), present

    def _logits_at(self, x, present, cells):
        """logits_at from x [B, h, w, P] (the present categories) -> [N, T]"""
        if self.kernel != GCN_KERNEL:
            return self._conv_at(x, self.convs[0], cells, present)
        left_kx1, left_1xk, right_1xk, right_kx1 = self.convs
        return (self._two_convs_at(x, present, left_kx1, left_1xk, cells)
                + self._two_convs_at(x, present, right_1xk, right_kx1, cells))

    def _two_convs_at(self, x, present, first, second, cells):
        """second(first(x)) at `cells`, with `first` evaluated only at the cells that
        `second` reads (the cells' neighbourhoods), not on the whole grid: one GCN path.
        x [B, h, w, P] (the present categories), cells [N, 3] -> [N, T]"""
        kh, kw = second.kernel_size
        batch, height, width, _ = dims(x)
        cells = tf.cast(cells, tf.int64)
        grid = tf.cast(tf.stack([batch, height, width]), tf.int64)
        wanted = tf.scatter_nd(cells, tf.ones([tf.shape(cells)[0]]), grid)[..., tf.newaxis]
        needed = tf.nn.max_pool2d(wanted, [kh, kw], 1, "SAME")[..., 0] > 0
        read = tf.where(needed)  # [N2, 3]: every cell some window of `cells` covers
        first_out = self._conv_at(x, first, read, present)  # [N2, T]
        # Row N2 stands for every cell outside `read` (zero padding): a zero row.
        rows = tf.concat([first_out, tf.zeros_like(first_out[:1])], axis=0)
        count = tf.shape(read, out_type=tf.int64)[0]
        index = tf.tensor_scatter_nd_update(tf.fill(tf.cast(grid, tf.int32), count), read,
                                            tf.range(count))  # [B, h, w] -> row of `rows`
        return self._conv_at(index[..., tf.newaxis], second, cells, rows=rows)

    def covered_cells(self, channels):
        """Output cells that some instance covers (any of their pixels, with a stride).
        channels [B, H, W, T] (0/1) -> [B, H/stride, W/stride] bool"""
        covered = tf.cast(tf.reduce_any(tf.not_equal(channels, 0), axis=-1, keepdims=True),
                          tf.float32)
        if self.stride > 1:
            covered = tf.nn.max_pool2d(covered, self.stride, self.stride, "VALID")
        return covered[..., 0] > 0

    def covered_score_map(self, channels):
        """The ranking score map S (softmax over categories) on the covered cells, 0 on the
        others: all that Eq. 3 reads (see `covered_probs`).

        channels [B, H, W, T] (0/1) -> [B, H/stride, W/stride, T] float32
        """
        present = _present_categories(channels)
        cells, probs = self.covered_probs(tf.gather(channels, present, axis=-1), present)
        return self.score_map(cells, probs, dims(channels)[:3])

    def score_map(self, cells, probs, size):
        """`covered_probs`' cells and probabilities [N, T] scattered onto the output grid of
        an input of size (B, H, W) -> [B, H/stride, W/stride, T] float32, 0 elsewhere."""
        batch, height, width = size
        shape = tf.stack([batch, height // self.stride, width // self.stride, self.num_things])
        return tf.scatter_nd(cells, probs, tf.cast(shape, tf.int64))

    def covered_probs(self, channels, present):
        """S at the cells some instance covers, computed on those cells alone while they are
        at most SPARSE_MAX_COVERED of the map (above that a full pass is cheaper than the
        gathers); either way the first convolutions read only the categories present.

        channels [B, H, W, P] (0/1) the input channels `present` [P] int32 (the others are
        zero) -> (cells [N, 3] int64 (batch, row, column on the output grid), probabilities
        [N, T] float32)
        """
        covered = self.covered_cells(channels)
        cells = tf.where(covered)
        x = self._pooled(channels)

        def on_cells():
            return tf.nn.softmax(tf.cast(self._logits_at(x, present, cells), tf.float32))

        def everywhere():
            logits = tf.cast(self._dense_logits(x, present), tf.float32)
            return tf.gather_nd(tf.nn.softmax(logits), cells)

        fraction = tf.reduce_mean(tf.cast(covered, tf.float32))
        return cells, tf.cond(fraction <= SPARSE_MAX_COVERED, on_cells, everywhere)

    def _dense_logits(self, x, present):
        """The logits of every cell from x [B, h, w, P] (the present categories) -> [B, h,
        w, T]."""
        if self.kernel != GCN_KERNEL:
            return self._conv(x, self.convs[0], present)
        left_kx1, left_1xk, right_1xk, right_kx1 = self.convs
        return (left_1xk(self._conv(x, left_kx1, present))
                + right_kx1(self._conv(x, right_1xk, present)))

    def _conv(self, x, conv, present):
        """conv over every cell of x, whose channels are the input channels `present`.
        x [B, h, w, P] -> [B, h, w, T]"""
        kernel = tf.gather(tf.cast(conv.kernel, self.compute_dtype), present, axis=2)
        y = tf.nn.conv2d(x, kernel, strides=1, padding="SAME")
        return y + tf.cast(conv.bias, self.compute_dtype) if conv.use_bias else y

    def _conv_at(self, x, conv, cells, present=None, rows=None):
        """conv ('same' padding) evaluated at `cells` only: per kernel tap, the cells' shifted
        neighbours gathered and multiplied by that tap (memory N x C per tap, not N x taps x
        C). x [B, h, w, C] (C = len(present) when given, the conv's input channels restricted
        to them); or, with `rows` [R + 1, C] (row R zero), x [B, h, w, 1] int64 holding the
        row of `rows` that is each cell's input (R where none) -> [N, T]"""
        kh, kw = conv.kernel_size
        kernel = tf.cast(conv.kernel, self.compute_dtype)  # [kh, kw, C, T]
        if present is not None:
            kernel = tf.gather(kernel, present, axis=2)
        fill = tf.zeros([], x.dtype) if rows is None else tf.shape(rows, out_type=x.dtype)[0] - 1
        padded = tf.pad(x, [[0, 0], [kh // 2, kh // 2], [kw // 2, kw // 2], [0, 0]],
                        constant_values=fill)
        _, height, width, depth = dims(padded)
        flat = tf.reshape(padded, [-1, depth])  # [B * hp * wp, C]
        cells = tf.cast(cells, tf.int64)
        height, width = tf.cast(height, tf.int64), tf.cast(width, tf.int64)
        # The window of output cell (y, x) starts at padded (y, x).
        corner = (cells[:, 0] * height + cells[:, 1]) * width + cells[:, 2]  # [N]
        y = tf.zeros([tf.shape(cells)[0], self.num_things], self.compute_dtype)
        for dy in range(kh):
            for dx in range(kw):
                taken = tf.gather(flat, corner + dy * width + dx)
                if rows is not None:
                    taken = tf.gather(rows, taken[:, 0])
                y += tf.matmul(taken, kernel[dy, dx])
        return y + tf.cast(conv.bias, self.compute_dtype) if conv.use_bias else y

    def compute_output_shape(self, input_shape):
        spatial = [None if d is None else d // self.stride for d in input_shape[1:3]]
        return (input_shape[0], spatial[0], spatial[1], self.num_things)

    def get_config(self):
        return {**super().get_config(), "num_things": self.num_things, "kernel": self.kernel,
                "kernel_size": self.kernel_size, "stride": self.stride}


def srm_inputs(masks, classes, num_things: int):
    """Draw instance masks into the SRM's thing-channel tensor.

    masks [B, M, H, W] (0/1 of any dtype, or probabilities: >= MASK_THRESHOLD is inside),
    classes [B, M] int (detector class 1..T; 0, or anything above T, = padding) ->
      channels [B, H, W, T] float32 (channel k = 1 where an instance of class k + 1 has its
      mask), instance_count [B, H, W] int32 (valid instances covering each pixel).
    """
    masks = tf.convert_to_tensor(masks)
    batch, num, height, width = dims(masks)
    inside = tf.cast(_inside(masks), tf.float32)
    classes = tf.cast(classes, tf.int32)
    valid = (classes > 0) & (classes <= num_things)
    one_hot = tf.one_hot(tf.where(valid, classes - 1, -1), num_things)  # [B, M, T]; 0 rows
    # Instances of each class covering each pixel: sums of 0/1 products, exact in float32.
    per_class = tf.einsum("bmp,bmt->bpt", tf.reshape(inside, [batch, num, height * width]),
                          one_hot)
    per_class = tf.reshape(per_class, [batch, height, width, num_things])
    channels = tf.minimum(per_class, 1.0)
    count = tf.reduce_sum(per_class, axis=-1)
    return channels, tf.cast(tf.round(count), tf.int32)


def ranking_scores(score_map, masks, classes, stride=None):
    """Eq. 3: the ranking score of each instance, mean of S[:, :, class] over its mask.

    score_map [B, h, w, T] probabilities (softmax of the SRM logits), masks [B, K, H, W] 0/1
    (other values act as pixel weights), classes [B, K] (1..T, 0 = padding) -> [B, K] float32;
    0 for padding rows and empty masks. When h < H (SRM stride s, given, or read from static
    shapes) each cell of S is weighted by the fraction of the mask inside it.
    """
    score_map = tf.cast(score_map, tf.float32)
    masks = tf.cast(masks, tf.float32)
    stride = stride or static_stride(masks.shape[2], score_map.shape[1])
    if stride > 1:
        batch, num, height, width = dims(masks)
        pooled = tf.nn.avg_pool2d(tf.reshape(masks, [batch * num, height, width, 1]),
                                  stride, stride, "VALID")
        masks = tf.reshape(pooled, [batch, num, height // stride, width // stride])
    classes = tf.cast(classes, tf.int32)
    num_things = score_map.shape[-1]
    per_class = tf.transpose(score_map, [0, 3, 1, 2])  # [B, T, h, w]
    class_maps = tf.gather(per_class, tf.clip_by_value(classes - 1, 0, num_things - 1),
                           batch_dims=1)  # [B, K, h, w]
    total = tf.reduce_sum(class_maps * masks, axis=[2, 3])
    area = tf.reduce_sum(masks, axis=[2, 3])
    valid = (classes > 0) & (classes <= num_things) & (area > 0)
    return tf.where(valid, total / tf.maximum(area, 1e-12), 0.0)


def instance_pixels(masks, classes, num_things: int):
    """The mask pixels of the valid instances, as a list: what the data-sized SRM path reads
    instead of full-size per-category maps.

    masks [B, K, H, W] as `srm_inputs` reads them (bool, or >= MASK_THRESHOLD inside),
    classes [B, K] int (1..T; 0 or above T: padding, left out) -> [M, 4] int64 (image,
    instance, row, column)
    """
    pixels = tf.where(_inside(masks))
    classes = tf.cast(classes, tf.int32)
    valid = (classes > 0) & (classes <= num_things)
    return tf.boolean_mask(pixels, tf.gather_nd(valid, pixels[:, :2]))


def present_things(classes, num_things: int):
    """The thing categories of the valid instances -> [P] int32 sorted thing indices, P >= 1
    (category 0 always kept, as in `_present_categories`). classes [B, K] (1..T, 0 = none)"""
    classes = tf.cast(classes, tf.int32)
    valid = (classes > 0) & (classes <= num_things)
    hit = tf.reduce_any(tf.one_hot(tf.where(valid, classes - 1, -1), num_things) > 0,
                        axis=[0, 1])
    return tf.cast(tf.where(hit | tf.equal(tf.range(num_things), 0))[:, 0], tf.int32)


def present_channels(pixels, classes, present, size):
    """`srm_inputs`' channels of the `present` categories alone, drawn from the pixel list.

    pixels [M, 4] (`instance_pixels`), classes [B, K], present [P] (`present_things`), size
    (B, H, W) -> [B, H, W, P] float32 (1 where an instance of that category has its mask)
    """
    slot = tf.scatter_nd(present[:, tf.newaxis], tf.range(tf.size(present)),
                         [tf.reduce_max(present) + 1])  # category -> its channel
    category = tf.gather_nd(tf.cast(classes, tf.int32), pixels[:, :2]) - 1
    where = tf.concat([tf.gather(pixels, [0, 2, 3], axis=1),
                       tf.cast(tf.gather(slot, category), tf.int64)[:, tf.newaxis]], axis=1)
    shape = tf.cast(tf.concat([tf.stack(size), tf.shape(present)], 0), tf.int64)
    hits = tf.scatter_nd(where, tf.ones([tf.shape(pixels)[0]]), shape)  # duplicates add up
    return tf.minimum(hits, 1.0)


def pixel_ranking_scores(pixels, cells, probs, classes, stride: int, grid):
    """Eq. 3 from the pixel list: `ranking_scores` of binary masks, summed over the mask
    pixels alone, each reading S at its cell (the map replicated over a stride's pixels).

    pixels [M, 4] (`instance_pixels`), cells [N, 3] every cell holding a mask pixel, in
    `tf.where` order, and probs [N, T] S there (`SpatialRankingModule.covered_probs`),
    classes [B, K], grid (h, w) the SRM's output size -> [B, K] float32 (0 for padding rows
    and empty masks)
    """
    batch, num = dims(classes)
    height, width = (tf.cast(side, tf.int64) for side in grid)

    def key(image, row, column):  # tf.where lists the cells in this key's order
        return (image * height + row) * width + column

    pixel_cells = key(pixels[:, 0], pixels[:, 2] // stride, pixels[:, 3] // stride)
    row = tf.searchsorted(key(cells[:, 0], cells[:, 1], cells[:, 2]), pixel_cells,
                          out_type=tf.int64)
    category = tf.cast(tf.gather_nd(tf.cast(classes, tf.int32), pixels[:, :2]) - 1, row.dtype)
    values = tf.gather_nd(probs, tf.stack([row, category], 1))
    instance = pixels[:, 0] * tf.cast(num, tf.int64) + pixels[:, 1]
    segments = batch * num
    total = tf.math.unsorted_segment_sum(values, instance, segments)
    area = tf.math.unsorted_segment_sum(tf.ones_like(values), instance, segments)
    return tf.reshape(tf.where(area > 0, total / tf.maximum(area, 1.0), 0.0), [batch, num])


def static_stride(size, grid: int) -> int:
    """The SRM's stride from static sizes of an input side and its output grid (for Eq. 2 and
    Eq. 3 when no stride is given)."""
    if size is None or grid is None or size % grid:
        raise ValueError(f"cannot tell the SRM stride from sizes {size} and {grid}: pass it")
    return size // grid


def _inside(masks):
    """Where masks of any dtype (bool; 0/1; probabilities) are inside: >= MASK_THRESHOLD,
    compared in their own dtype (no float copy of integer or bool masks) -> bool."""
    masks = tf.convert_to_tensor(masks)
    if masks.dtype == tf.bool:
        return masks
    if masks.dtype.is_floating:
        return masks >= tf.cast(MASK_THRESHOLD, masks.dtype)
    return masks >= tf.ones([], masks.dtype)  # integers: >= 0.5 is >= 1


def present_inputs(pixels, classes, num_things: int, size):
    """The SRM's input from the pixel list: the categories present (`present_things`) and
    their channels (`present_channels`). pixels [M, 4], classes [B, K], size (B, H, W) ->
    (channels [B, H, W, P] float32, present [P] int32)"""
    present = present_things(classes, num_things)
    return present_channels(pixels, classes, present, size), present


def _present_categories(x):
    """Indices of the channels of x [B, h, w, T] that are non-zero somewhere -> [P] int32,
    P >= 1 (channel 0 is always kept, so that no convolution has zero input channels)."""
    nonzero = tf.reduce_any(tf.not_equal(x, 0), axis=[0, 1, 2])
    first = tf.equal(tf.range(tf.shape(x)[-1]), 0)
    return tf.cast(tf.where(nonzero | first)[:, 0], tf.int32)
