"""OANet end to end on tiny inputs: every loss term, inference outputs, serialization."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.modeling.builder import build_oanet
from oanet_tf.modeling.oanet import LOSS_NAMES, OANet
from oanet_tf.ops.mask_ops import MASK_THRESHOLD
from tests.tiny_model import CATEGORIES, XLA, tiny_batch, tiny_config

@pytest.fixture(scope="module")
def model():
    config = tiny_config()
    keras.utils.set_random_seed(0)
    return build_oanet(config.model, config.train, CATEGORIES)


def test_every_loss_term_is_finite_and_positive(model):
    losses = model.compute_losses(tiny_batch(), training=True)
    assert set(losses) == set(LOSS_NAMES)
    for name, value in losses.items():
        assert np.isfinite(value), name
        assert float(value) > 0.0, name
    total = model.total_loss(losses)
    expected = sum(float(v) for k, v in losses.items() if k not in ("seg", "srm")) \
        + 0.25 * float(losses["seg"]) + float(losses["srm"])
    assert float(total) == pytest.approx(expected, rel=1e-5)


def test_detect_output_shapes(model):
    out = model.detect(tiny_batch()["images"])
    d = 8
    assert tuple(out["boxes"].shape) == (2, d, 4)
    assert tuple(out["masks"].shape) == (2, d, 28, 28)
    assert tuple(out["stuff_probs"].shape) == (2, 64, 64, 2)
    assert tuple(out["instance_masks"].shape) == (2, d, 64, 64)
    np.testing.assert_allclose(tf.reduce_sum(out["stuff_probs"], -1), 1.0, rtol=1e-5)
    classes = out["classes"].numpy()
    assert classes.min() >= 0 and classes.max() <= 2


def test_model_config_round_trip(model):
    clone = OANet.from_config(model.get_config())
    assert clone.num_things == 2 and clone.num_stuff == 2
    assert clone.get_config() == model.get_config()
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]
    clone.set_weights(model.get_weights())
    images = tiny_batch()["images"]
    for name, value in clone.detect(images).items():
        np.testing.assert_allclose(value, model.detect(images)[name], atol=1e-6, err_msg=name)


@pytest.mark.parametrize("sharing, extra_backbones", [("backbone", 0), ("none", 1)])
def test_sharing_modes_build_separate_stuff_features(sharing, extra_backbones):
    config = tiny_config(f"model.sharing={sharing}")
    net = build_oanet(config.model, config.train, CATEGORIES)
    assert net.stuff_fpn is not None
    assert (net.stuff_backbone is not None) == bool(extra_backbones)
    losses = net.compute_losses(tiny_batch(), training=True)
    assert np.isfinite(float(net.total_loss(losses)))


def padded(batch, canvas):
    """The batch zero-padded to a larger canvas (H, W), as a data pipeline pads it: semantic
    and owner labels ignored in the padding, image_size unchanged."""
    h, w = canvas
    out = dict(batch)
    for key, value in (("images", 0.0), ("gt_masks", 0), ("semantic", 255), ("owner", 255)):
        tensor = batch[key]
        axis = 1 if key in ("images", "semantic", "owner") else 2
        pad = [[0, 0]] * tensor.shape.rank
        pad[axis] = [0, h - tensor.shape[axis]]
        pad[axis + 1] = [0, w - tensor.shape[axis + 1]]
        out[key] = tf.pad(tensor, pad, constant_values=value)
    return out


def test_train_step_compiles_with_xla_once_per_bucket():
    """The whole train step (proposals, sampling, RoIAlign, every loss) is XLA-compilable, at
    each bucket's shape, in one run."""
    config = tiny_config(*XLA)  # builds with the XLA-compilable ops
    keras.utils.set_random_seed(0)
    net = build_oanet(config.model, config.train, CATEGORIES)
    assert net.static_shapes
    net.compile(optimizer=keras.optimizers.SGD(0.01), jit_compile=True)
    small, wide = tiny_batch(), padded(tiny_batch(), (64, 96))
    data = tf.data.Dataset.from_generator(
        lambda: iter([small, wide] * 2), output_signature={  # sizes vary, channels do not
            k: tf.TensorSpec([None] * (v.shape.rank - 1) + [v.shape[-1] if k in (
                "images", "gt_boxes", "image_size") else None], v.dtype)
            for k, v in small.items()})
    history = net.fit(data, epochs=2, steps_per_epoch=2, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert all(np.isfinite(losses)) and losses[1] < losses[0]


def test_one_model_takes_any_padded_size_and_keeps_detections_inside_each_image():
    """Two images of different sizes in one padded batch: every box, pasted mask pixel lies
    inside its own image; the outputs follow the batch's canvas."""
    config = tiny_config("model.roi_heads.test_score_threshold=0.0")
    keras.utils.set_random_seed(0)
    net = build_oanet(config.model, config.train, CATEGORIES)
    sizes = np.array([[64, 40], [48, 64]], np.int32)
    images = tf.random.uniform([2, 64, 96, 3], 0, 255, seed=1)
    out = {k: v.numpy() for k, v in net.detect(images, sizes).items()}
    assert out["stuff_probs"].shape[1:3] == (64, 96)
    assert out["instance_masks"].shape[2:] == (64, 96)
    for b, (h, w) in enumerate(sizes):
        count = out["num_detections"][b]
        assert count > 0
        boxes = out["boxes"][b, :count]
        assert boxes.min() >= 0 and boxes[:, 2].max() <= h and boxes[:, 3].max() <= w
        masks = out["instance_masks"][b]
        assert np.all(masks[:, h:] == 0) and np.all(masks[:, :, w:] == 0)
    losses = net.compute_losses(padded(tiny_batch(), (96, 64)), training=True)
    assert all(np.isfinite(float(v)) for v in losses.values())


def test_srm_reads_only_detections_at_or_above_srm_min_score():
    """eval.srm_input "mergeable": detections below the score are not in the SRM's input, as
    if their masks were empty, and get ranking score 0; the rest are ranked by a map that the
    dropped ones no longer shape."""
    config = tiny_config("model.roi_heads.test_score_threshold=0.0")
    keras.utils.set_random_seed(0)
    net = build_oanet(config.model, config.train, CATEGORIES)
    images = tiny_batch()["images"]
    every = {k: v.numpy() for k, v in net.detect(images).items()}
    valid = every["classes"] > 0
    cut = float(np.median(every["scores"][valid]))
    some = {k: v.numpy() for k, v in net.detect(images, srm_min_score=cut).items()}
    kept = valid & (every["scores"] >= cut)
    assert kept.any() and (valid & ~kept).any()
    np.testing.assert_array_equal(some["scores"], every["scores"])  # detections unchanged
    masks = (every["instance_masks"] >= MASK_THRESHOLD) & kept[:, :, None, None]
    expected, _ = net.srm.rank(tf.cast(masks, tf.float32), np.where(kept, every["classes"], 0))
    np.testing.assert_allclose(some["ranking_scores"], expected, atol=1e-6)
    assert np.all(some["ranking_scores"][~kept] == 0)
    assert not np.allclose(some["ranking_scores"][kept], every["ranking_scores"][kept])


def test_xla_and_fast_ops_give_the_same_losses_and_detections():
    """static_shapes=False (C++ NMS, crop_and_resize RoIAlign, mask head on the positives only, the
    SRM on the cells its loss and Eq. 3 read) computes what the static XLA path computes."""
    config = tiny_config()
    keras.utils.set_random_seed(0)
    fast = build_oanet(config.model, config.train, CATEGORIES)
    xla = build_oanet(config.model, tiny_config(*XLA).train, CATEGORIES)
    xla.set_weights(fast.get_weights())
    assert xla.static_shapes and not fast.static_shapes
    batch = tiny_batch()
    fast_losses = fast.compute_losses(batch, training=True)
    xla_losses = xla.compute_losses(batch, training=True)
    for name in LOSS_NAMES:
        np.testing.assert_allclose(float(fast_losses[name]), float(xla_losses[name]),
                                   rtol=1e-4, atol=1e-6, err_msg=name)
    fast_out, xla_out = fast.detect(batch["images"]), xla.detect(batch["images"])
    np.testing.assert_array_equal(fast_out["classes"], xla_out["classes"])
    np.testing.assert_allclose(fast_out["boxes"], xla_out["boxes"], atol=1e-3)
    np.testing.assert_allclose(fast_out["masks"], xla_out["masks"], atol=1e-4)
    assert float(fast_losses["srm"]) > 0  # the batch has conflicting pixels
    np.testing.assert_allclose(fast_out["ranking_map"], xla_out["ranking_map"], atol=1e-5)
    np.testing.assert_allclose(fast_out["ranking_scores"], xla_out["ranking_scores"],
                               atol=1e-5)
