"""OursBench's training batches at an image size padded to a larger one, and the train step
traced once for batches of any size."""

import numpy as np
import pytest

from harness.inputs import encoded_jpeg
from harness.model_bench import SPATIAL_AXES, OursBench, any_size_spec
from oanet_tf.data.panoptic_format import IGNORE_LABEL

IMAGE_SIZE, PADDED = (40, 56), (64, 96)
BATCH, INSTANCES, SEED = 2, 3, 0


def _image_part(ndim, axes):
    """The index of the image's own rows and columns (the top left) of a padded array."""
    sides = dict(zip(axes, IMAGE_SIZE))
    return tuple(slice(sides[a]) if a in sides else slice(None) for a in range(ndim))


def test_a_padded_batch_is_the_unpadded_one_with_void_around(tiny_bench):
    plain = tiny_bench.train_batch(BATCH, SEED, INSTANCES, IMAGE_SIZE)
    padded = tiny_bench.train_batch(BATCH, SEED, INSTANCES, IMAGE_SIZE, PADDED, (30, 42))
    height, width = IMAGE_SIZE
    assert padded["images"].shape == (BATCH, *PADDED, 3)
    assert padded["gt_masks"].shape[2:] == PADDED
    for key, axes in SPATIAL_AXES.items():
        array = padded[key].numpy()
        inside = _image_part(array.ndim, axes)
        np.testing.assert_array_equal(array[inside], plain[key].numpy(), err_msg=key)
        outside = np.ones(array.shape, bool)
        outside[inside] = False
        fill = IGNORE_LABEL if key in ("semantic", "owner") else 0
        assert (array[outside] == fill).all(), key
    for key in ("gt_boxes", "gt_classes", "gt_count", "image_id"):
        np.testing.assert_array_equal(padded[key], plain[key])
    np.testing.assert_array_equal(padded["image_size"], [IMAGE_SIZE] * BATCH)
    np.testing.assert_array_equal(padded["original_size"], [(30, 42)] * BATCH)
    boxes = padded["gt_boxes"].numpy()[:, :INSTANCES]
    assert (boxes[..., 2] <= height).all() and (boxes[..., 3] <= width).all()


def test_a_padded_size_below_the_image_size_is_refused(tiny_bench):
    with pytest.raises(ValueError, match="smaller than the image size"):
        tiny_bench.train_batch(BATCH, SEED, INSTANCES, IMAGE_SIZE, (32, 64))


def test_any_size_spec_leaves_height_and_width_open(tiny_bench):
    spec = any_size_spec(tiny_bench.train_batch(BATCH, SEED, INSTANCES, IMAGE_SIZE, PADDED))
    assert spec["images"].shape.as_list() == [BATCH, None, None, 3]
    assert spec["gt_masks"].shape.as_list()[2:] == [None, None]
    assert spec["semantic"].shape.as_list() == spec["owner"].shape.as_list() == [BATCH, None,
                                                                                 None]
    assert spec["gt_boxes"].shape.as_list()[0] == BATCH


def test_a_bench_of_one_size_serves_its_jpegs_at_that_size(tiny_files):
    """As the peer's transform keeps them: the serve rows compare the same sizes."""
    size = (64, 96)
    bench = OursBench(*tiny_files, size)
    pixels, image_size, _ = bench.image_inputs().from_encoded([encoded_jpeg(SEED, *size)])
    assert tuple(pixels.shape) == (1, *size, 3)
    np.testing.assert_array_equal(image_size, [size])


def test_landscape_and_portrait_batches_share_one_traced_step(tiny_bench):
    """The portrait batch runs the landscape batch's trace (the first call may trace twice:
    once more after creating the optimizer's variables)."""
    tiny_bench.prepare_train(tiny_bench.train_batch(BATCH, SEED, INSTANCES, (64, 96)))
    losses = [tiny_bench.call()]
    step, = tiny_bench._train_steps.values()
    traces = step.experimental_get_tracing_count()
    tiny_bench.prepare_train(tiny_bench.train_batch(BATCH, SEED, INSTANCES, (96, 64)))
    losses.append(tiny_bench.call())
    assert list(tiny_bench._train_steps.values()) == [step]
    assert step.experimental_get_tracing_count() == traces
    assert np.isfinite(losses).all()


def test_a_bfloat16_bench_computes_in_bfloat16_and_trains(tiny_files):
    import keras

    before = keras.mixed_precision.global_policy().name
    bench = OursBench(*tiny_files, size=(64, 64), precision="bfloat16")
    assert keras.mixed_precision.global_policy().name == before
    assert bench.model.backbone.compute_dtype == "bfloat16"
    assert bench.model.backbone.variable_dtype == "float32"
    bench.prepare("train", BATCH, SEED, INSTANCES)
    assert np.isfinite(bench.call())
