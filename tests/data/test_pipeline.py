"""oanet_tf.data.pipeline: the tf.data pipeline on the hand-made scene (batch layout, resizing,
padding, flips, jitter, truncation, sharding, determinism and resuming), on images of mixed
sizes (padding to the batch, grouping by orientation or bucket, resuming across chunks and
epochs), on the synthetic dataset, and filtering bad images."""

import os

import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.config import DataConfig
from oanet_tf.data import pipeline
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.data.pipeline import build_dataset, group_order
from oanet_tf.data.splits import synthetic_split
from tests.data.scenes import (GRASS, HEIGHT, IGNORE, MIXED_IMAGES, MIXED_RESIZED, PERSON,
                               PERSON_BOX, SEMANTIC, TIE, TIE_BOX, WIDTH, _config,
                               _expected_labels, _mixed_split, _pixels, _rect, _rle,
                               _scene_image, _scene_instances, _three_image_split, _write_dataset)

SIDE = 32  # SIZE_DIVISIBILITY, written out: padded sides are multiples of it


def test_pipeline_filters_bad_images(tmp_path):
    split = _three_image_split(str(tmp_path))
    config = DataConfig(short_side=HEIGHT, max_side=WIDTH, max_instances=4)
    data = PanopticDataset.from_split(split, skip_bad_images=True)
    batches = list(build_dataset(data, config, training=False, batch_size=2))
    assert [b["image_id"].numpy().tolist() for b in batches] == [[1]]
    assert len(data.bad_images) == 2


def test_pipeline_without_skipping_stops_on_a_bad_image(tmp_path):
    split = _write_dataset(str(tmp_path), [_scene_image(1), _scene_image(2)])
    path = os.path.join(split.image_dir, "000002.png")
    with open(path, "wb") as f:
        f.write(b"garbage")
    config = DataConfig(short_side=HEIGHT, max_side=WIDTH)
    data = PanopticDataset.from_split(split)
    with pytest.raises(tf.errors.OpError, match="000002.png"):
        list(build_dataset(data, config, training=False, batch_size=1))


BATCH_TABLE = {  # docs/ARCHITECTURE.md, "A training batch": dtype, shape after [B]
    "images": (tf.float32, ("H", "W", 3)),
    "gt_boxes": (tf.float32, ("M", 4)),
    "gt_classes": (tf.int32, ("M",)),
    "gt_masks": (tf.uint8, ("M", "H", "W")),
    "gt_count": (tf.int32, ()),
    "semantic": (tf.int32, ("H", "W")),
    "owner": (tf.int32, ("H", "W")),
    "image_id": (tf.int64, ()),
    "original_size": (tf.int32, (2,)),
    "image_size": (tf.int32, (2,)),
}


def _first(split, training=False, **overrides):
    data = PanopticDataset.from_split(split)
    batch = next(iter(build_dataset(data, _config(**overrides), training=training,
                                    batch_size=1)))
    return {key: value.numpy()[0] for key, value in batch.items()}


def _upsample(array, factor):
    return np.repeat(np.repeat(array, factor, axis=0), factor, axis=1)


def _bilinear(image, out_h, out_w):
    """Plain numpy bilinear resize with pixel-centre alignment and edge clamping."""
    def weights(in_size, out_size):
        src = np.clip((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0, in_size - 1)
        low = np.floor(src).astype(int)
        return low, np.minimum(low + 1, in_size - 1), src - low

    image = image.astype(np.float64)
    y0, y1, fy = weights(image.shape[0], out_h)
    x0, x1, fx = weights(image.shape[1], out_w)
    rows = image[y0] * (1 - fy)[:, None, None] + image[y1] * fy[:, None, None]
    return rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]


def _round_up(size):
    return -(-np.asarray(size) // SIDE) * SIDE


@pytest.mark.parametrize("buckets", [(), ((64, 64),)])
def test_batch_keys_dtypes_and_shapes(scene_split, buckets):
    # Without buckets (H, W) and M vary per batch; with one bucket all are static.
    config = _config(scale_jitter=(0.8, 1.2), horizontal_flip=True, buckets=buckets)
    data = PanopticDataset.from_split(scene_split)
    ds = build_dataset(data, config, training=True, batch_size=3)
    static = {"H": 64, "W": 64, "M": 5} if buckets else {}
    assert set(ds.element_spec) == set(BATCH_TABLE)
    for key, (dtype, shape) in BATCH_TABLE.items():
        expected = [3] + [static.get(s) if isinstance(s, str) else s for s in shape]
        assert ds.element_spec[key].dtype == dtype, key
        assert ds.element_spec[key].shape.as_list() == expected, key  # batch always static
    batch = next(iter(ds))
    height, width = (64, 64) if buckets else _round_up(batch["image_size"].numpy().max(axis=0))
    sizes = {"H": height, "W": width, "M": 5 if buckets else 2}  # the scene has 2 instances
    for key, (dtype, shape) in BATCH_TABLE.items():
        assert batch[key].shape.as_list() == [3] + [sizes.get(s, s) for s in shape], key


def test_resize_and_padding_values(scene_split):
    # 12x16 -> shorter side 24: scale 2 exactly; padded to 32x32 with its 2 instances.
    out = _first(scene_split)
    assert out["images"].shape == (32, 32, 3) and out["gt_masks"].shape == (2, 32, 32)
    np.testing.assert_array_equal(out["image_size"], [24, 32])
    np.testing.assert_array_equal(out["original_size"], [HEIGHT, WIDTH])
    assert out["image_id"] == 1 and out["gt_count"] == 2
    semantic, owner = _expected_labels()
    np.testing.assert_array_equal(out["semantic"][:24, :32], _upsample(semantic, 2))
    np.testing.assert_array_equal(out["owner"][:24, :32], _upsample(owner, 2))
    for label in (out["semantic"], out["owner"]):
        assert (label[24:] == IGNORE).all()
    assert (out["images"][24:] == 0).all()
    np.testing.assert_array_equal(out["gt_boxes"], 2 * np.array([TIE_BOX, PERSON_BOX]))
    np.testing.assert_array_equal(out["gt_classes"], [2, 1])
    np.testing.assert_array_equal(out["gt_masks"][1][:24, :32], _upsample(_rect(PERSON_BOX), 2))
    assert (out["gt_masks"][:, 24:] == 0).all()
    np.testing.assert_allclose(out["images"][:24, :32], _bilinear(_pixels(seed=1), 24, 32),
                               atol=1e-3)


def test_longer_side_limit_and_shrink_to_fit(scene_split):
    # max_side binds: scale = 40 / 16 = 2.5 -> 30x40; boxes scale by exactly 2.5.
    out = _first(scene_split, short_side=48, max_side=40)
    np.testing.assert_array_equal(out["image_size"], [30, 40])
    np.testing.assert_allclose(out["gt_boxes"][:2], 2.5 * np.array([TIE_BOX, PERSON_BOX]))
    # 36x48 fits no bucket (the largest is 32x32): shrunk to scale 2 (24x32), never cropped.
    out = _first(scene_split, short_side=36, buckets=((32, 32), (16, 32)))
    np.testing.assert_array_equal(out["image_size"], [24, 32])
    assert out["images"].shape == (32, 32, 3)
    np.testing.assert_array_equal(out["gt_boxes"][1], 2 * np.array(PERSON_BOX))


def test_instances_lost_in_downscaling_are_dropped(tmp_path):
    # A 1-pixel tie at an even row and column: halving samples odd rows and columns only.
    anns = _scene_instances()
    anns[0]["segmentation"] = _rle(_rect((4, 6, 5, 7)))
    split = _write_dataset(str(tmp_path), [_scene_image()], anns)
    out = _first(split, short_side=HEIGHT // 2)
    np.testing.assert_array_equal(out["image_size"], [6, 8])
    assert out["gt_count"] == 1
    np.testing.assert_array_equal(out["gt_classes"], [1])  # M: what is left
    np.testing.assert_array_equal(out["gt_boxes"][0], np.array(PERSON_BOX) / 2)


def test_truncation_keeps_the_largest_instances(scene_split):
    out = _first(scene_split, max_instances=1)
    assert out["gt_count"] == 1 and out["gt_classes"].tolist() == [1]  # the person
    np.testing.assert_array_equal(out["gt_boxes"][0], 2 * np.array(PERSON_BOX))


def _mask_extents(mask):
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return [rows[0], cols[0], rows[-1] + 1, cols[-1] + 1]


def test_flip_is_consistent(scene_split):
    data = PanopticDataset.from_split(scene_split)
    config = _config(horizontal_flip=True)
    semantic = _upsample(_expected_labels()[0], 2)
    reference = _first(scene_split)  # evaluation: never flipped
    ds = build_dataset(data, config, training=True, batch_size=4, seed=5)
    seen = set()
    for batch in ds.take(4):
        for k in range(4):
            out = {key: value.numpy()[k] for key, value in batch.items()}
            flipped = not np.array_equal(out["semantic"][:24, :32], semantic)
            seen.add(flipped)
            expected = semantic[:, ::-1] if flipped else semantic
            np.testing.assert_array_equal(out["semantic"][:24, :32], expected)
            np.testing.assert_array_equal(out["owner"][:24, :32] == IGNORE, expected > 1)
            image = reference["images"][:24, :32]
            np.testing.assert_allclose(out["images"][:24, :32],
                                       image[:, ::-1] if flipped else image)
            for i in range(out["gt_count"]):
                np.testing.assert_array_equal(out["gt_boxes"][i],
                                              _mask_extents(out["gt_masks"][i]))
    assert seen == {True, False}


def test_scale_jitter_stays_in_range(scene_split):
    low, high = 0.5, 1.5
    data = PanopticDataset.from_split(scene_split)
    ds = build_dataset(data, _config(scale_jitter=(low, high)), training=True, batch_size=8,
                       seed=1)
    sizes = np.concatenate([b["image_size"].numpy() for b in ds.take(4)])
    shorter = sizes[:, 0]
    assert shorter.min() >= np.floor(2 * HEIGHT * low) and shorter.max() <= np.ceil(
        2 * HEIGHT * high)
    assert len(set(shorter.tolist())) > 5  # really random
    np.testing.assert_allclose(sizes[:, 1] / sizes[:, 0], WIDTH / HEIGHT, atol=0.1)


def _stream(split, seed, batches=3):
    data = PanopticDataset.from_split(split)
    config = _config(scale_jitter=(0.7, 1.3), horizontal_flip=True)
    ds = build_dataset(data, config, training=True, batch_size=2, seed=seed)
    return [{k: v.numpy() for k, v in b.items()} for b in ds.take(batches)]


def test_determinism_with_a_seed(tmp_path):
    split = _write_dataset(str(tmp_path), [_scene_image(i) for i in range(1, 5)])
    first, again, other = _stream(split, 3), _stream(split, 3), _stream(split, 4)
    for a, b in zip(first, again):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert any(not np.array_equal(a[key], b[key])
               for a, b in zip(first, other) for key in ("image_id", "image_size", "images"))


def test_sharding_by_input_context(tmp_path):
    split = _write_dataset(str(tmp_path), [_scene_image(i) for i in range(1, 6)])
    data = PanopticDataset.from_split(split)
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2,
                                             input_pipeline_id=pipeline_id,
                                             num_replicas_in_sync=2)
        ds = build_dataset(data, _config(), training=False, batch_size=4,
                           input_context=context)
        batches = list(ds)
        assert all(b["images"].shape[0] <= 2 for b in batches)  # per-replica batch: 4 / 2
        seen.append(sorted(i for b in batches for i in b["image_id"].numpy().tolist()))
    assert seen == [[1, 3, 5], [2, 4]]


def test_training_repeats_and_drops_the_remainder(tmp_path):
    split = _write_dataset(str(tmp_path), [_scene_image(i) for i in range(1, 4)])
    data = PanopticDataset.from_split(split)
    ds = build_dataset(data, _config(), training=True, batch_size=2, seed=0)
    epochs = np.concatenate([b["image_id"].numpy() for b in ds.take(6)]).reshape(4, 3)
    for epoch in epochs:  # each pass over the data is a permutation ...
        assert sorted(epoch.tolist()) == [1, 2, 3]
    assert len({tuple(epoch) for epoch in epochs}) > 1  # ... reshuffled each time
    once = build_dataset(data, _config(), training=True, batch_size=2, seed=0, repeat=False)
    assert [b["image_id"].shape[0] for b in once] == [2]


ORDER_ITEMS = 10_000
# A Spearman rank correlation between position and item farther than this many standard
# deviations from 0 (its sd over uniform permutations is 1 / sqrt(n - 1)) does not come
# from a uniform permutation: p < 1e-4 under the normal approximation.
ORDER_SIGMAS = 4


def _spearman(order) -> float:
    """Rank correlation of a permutation of 0..n-1 with 0..n-1 (numpy)."""
    order = np.asarray(order, np.float64)
    return float(np.corrcoef(np.arange(len(order)), order)[0, 1])


def test_epoch_order_is_a_seeded_permutation_far_from_file_order():
    bound = ORDER_SIGMAS / np.sqrt(ORDER_ITEMS - 1)
    epochs = [pipeline.epoch_order(ORDER_ITEMS, 3, epoch).numpy() for epoch in range(3)]
    for order in epochs:
        np.testing.assert_array_equal(np.sort(order), np.arange(ORDER_ITEMS))
        assert abs(_spearman(order)) < bound
    assert len({tuple(order) for order in epochs}) == 3
    np.testing.assert_array_equal(pipeline.epoch_order(ORDER_ITEMS, 3, 1), epochs[1])
    assert not np.array_equal(pipeline.epoch_order(ORDER_ITEMS, 4, 1), epochs[1])
    # The statistic tells a shuffle buffer of 256 (the order before) from a permutation.
    buffered = next(iter(tf.data.Dataset.range(ORDER_ITEMS).shuffle(256, seed=3)
                         .batch(ORDER_ITEMS))).numpy()
    assert abs(_spearman(buffered)) > bound


def test_each_epoch_reads_the_images_in_epoch_order(tmp_path):
    # The scene's images share one orientation, so grouping keeps the stream's order.
    count, seed, epochs = 5, 6, 3
    split = _write_dataset(str(tmp_path), [_scene_image(i) for i in range(1, count + 1)])
    data = PanopticDataset.from_split(split)
    ds = build_dataset(data, _config(), training=True, batch_size=1, seed=seed)
    ids = [int(b["image_id"][0]) for b in ds.take(epochs * count)]
    for epoch in range(epochs):
        expected = [1 + int(k) for k in pipeline.epoch_order(count, seed, epoch)]
        assert ids[epoch * count:(epoch + 1) * count] == expected
    # Pipeline 1 of 2 permutes its own share, images 2 and 4 (indices 1, 3).
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                         num_replicas_in_sync=2)
    ds = build_dataset(data, _config(), training=True, batch_size=2, seed=seed,
                       input_context=context)
    ids = [int(b["image_id"][0]) for b in ds.take(2 * epochs)]
    for epoch in range(epochs):
        expected = [(2, 4)[int(k)] for k in pipeline.epoch_order(2, seed, epoch)]
        assert ids[2 * epoch:2 * epoch + 2] == expected


def test_synthetic_dataset_through_the_pipeline(synthetic_dir):
    data = PanopticDataset.from_split(synthetic_split(synthetic_dir, "train"))
    assert data.uses_instances_json
    config = DataConfig(short_side=96, max_side=128, scale_jitter=(0.8, 1.2),
                        max_instances=16)
    batch = next(iter(build_dataset(data, config, training=True, batch_size=4)))
    height, width = _round_up(batch["image_size"].numpy().max(axis=0))
    assert batch["images"].shape == (4, height, width, 3)
    counts = batch["gt_count"].numpy()
    assert counts.min() > 0
    for k in range(4):
        classes = batch["gt_classes"].numpy()[k]
        assert (classes[:counts[k]] >= 1).all() and (classes[counts[k]:] == 0).all()
        owner = batch["owner"].numpy()[k]
        assert set(np.unique(owner)) <= set(range(data.categories.num_things)) | {IGNORE}
    # The instances JSON's masks are whole: somewhere two instances overlap (person + tie).
    overlaps = [b["gt_masks"].numpy().sum(axis=1).max()
                for b in build_dataset(data, config, training=False, batch_size=4)]
    assert max(overlaps) > 1


def _counting_loads(data):
    """Record the index of every `load_example` call on `data` (from any thread)."""
    calls = []
    load = data.load_example

    def counted(index, *args):
        calls.append(index)
        return load(index, *args)

    data.load_example = counted
    return calls


def test_resume_skips_without_decoding(tmp_path):
    split = _write_dataset(str(tmp_path), [_scene_image(i) for i in range(1, 6)])
    data = PanopticDataset.from_split(split)
    calls = _counting_loads(data)
    resumed = list(build_dataset(data, _config(), training=False, batch_size=1, start_batch=3))
    assert [b["image_id"].numpy().tolist() for b in resumed] == [[4], [5]]
    assert sorted(calls) == [3, 4]
    # Shuffled, one pass: the two skipped batches of 2 are never decoded.
    calls.clear()
    fresh = list(build_dataset(data, _config(), training=True, batch_size=2, seed=1,
                               repeat=False))
    assert len(calls) == 5
    calls.clear()
    resumed = list(build_dataset(data, _config(), training=True, batch_size=2, seed=1,
                                 repeat=False, start_batch=1))
    assert len(calls) == 3
    np.testing.assert_array_equal(resumed[0]["image_id"], fresh[1]["image_id"])
    # Ten epochs in: only what the resumed stream reads ahead is decoded.
    calls.clear()
    config = _config(num_parallel_calls=1)
    next(iter(build_dataset(data, config, training=True, batch_size=1, seed=1,
                            start_batch=50)))
    assert 1 <= len(calls) < 50, calls


def test_resume_past_a_whole_chunk(tmp_path):
    # Batches of 1: batch GROUP_BATCHES + 1 is the second of the second chunk, in its third
    # epoch of 8 images (tests/data/test_tfrecords.py resumes with small chunks).
    data = PanopticDataset.from_split(_mixed_split(str(tmp_path)))
    config = _config(scale_jitter=(0.6, 1.4), horizontal_flip=True)
    k, more = pipeline.GROUP_BATCHES + 1, 3
    fresh = list(build_dataset(data, config, training=True, batch_size=1, seed=5).take(k + more))
    resumed = build_dataset(data, config, training=True, batch_size=1, seed=5, start_batch=k)
    for a, b in zip(fresh[k:], resumed.take(more), strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_resume_with_a_seed_only(scene_split):
    data = PanopticDataset.from_split(scene_split)
    with pytest.raises(ValueError, match="needs a fixed seed"):
        build_dataset(data, _config(), training=True, batch_size=1, seed=None, start_batch=2)
    with pytest.raises(ValueError, match=">= 0"):
        build_dataset(data, _config(), training=True, batch_size=1, start_batch=-1)


def test_shuffle_order_ignores_the_global_seed(tmp_path):
    # The order depends on `seed` only (a resumed run may set another global seed).
    split = _write_dataset(str(tmp_path), [_scene_image(i) for i in range(1, 6)])
    data = PanopticDataset.from_split(split)
    orders = []
    try:
        for global_seed in (0, 1234):
            tf.random.set_seed(global_seed)
            ds = build_dataset(data, _config(), training=True, batch_size=5, seed=2)
            orders.append([b["image_id"].numpy().tolist() for b in ds.take(3)])
    finally:
        tf.random.set_seed(None)
    assert orders[0] == orders[1]
    assert len({tuple(epoch) for epoch in orders[0]}) > 1


def test_truncation_ties_keep_the_earlier_instance(tmp_path):
    # Three instances with areas 6, 4, 6 (file order): keeping 2 keeps the two of area 6,
    # keeping 1 keeps the first of them; order as in the file.
    boxes = [(0, 0, 2, 3), (5, 0, 7, 2), (8, 10, 10, 13)]
    anns = [{"image_id": 1, "category_id": cat, "iscrowd": 0, "segmentation": _rle(_rect(box))}
            for cat, box in zip((TIE, PERSON, PERSON), boxes)]
    split = _write_dataset(str(tmp_path), [_scene_image()], anns)
    areas = np.array([_rect(b).sum() for b in boxes])
    for keep in (1, 2, 3):
        expected = np.sort(np.argsort(-areas, kind="stable")[:keep])  # numpy reference
        out = _first(split, max_instances=keep)
        assert out["gt_count"] == keep
        np.testing.assert_array_equal(out["gt_boxes"][:keep], 2 * np.array(boxes)[expected])


# ------------------------------------------------------------------ mixed sizes and grouping

def _batches(source, config, training=False, batch_size=2, **kwargs):
    ds = build_dataset(source, config, training=training, batch_size=batch_size, **kwargs)
    return [{key: value.numpy() for key, value in batch.items()} for batch in ds]


def _is_portrait(image_id):
    height, width = MIXED_IMAGES[image_id][:2]
    return height > width


# Evaluation of MIXED_IMAGES in batches of 2, by hand: landscape 1, 3, 5 and portrait 2, 4,
# 6, 7, 8 give whole batches of each orientation first, then the leftovers 5 and 8 (mixed).
# image ids, padded (H, W) (the largest sides rounded up to 32), M (the most people).
MIXED_BATCHES = [((1, 3), (32, 64), 2), ((2, 4), (64, 32), 3), ((6, 7), (96, 32), 2),
                 ((5, 8), (64, 64), 1)]


def test_batches_pad_to_their_largest_image(tmp_path):
    data = PanopticDataset.from_split(_mixed_split(str(tmp_path)))
    batches = _batches(data, _config())
    assert [tuple(b["image_id"]) for b in batches] == [ids for ids, _, _ in MIXED_BATCHES]
    for batch, (ids, (height, width), slots) in zip(batches, MIXED_BATCHES):
        assert batch["images"].shape == (2, height, width, 3)
        assert batch["gt_masks"].shape == (2, slots, height, width)
        assert batch["gt_boxes"].shape == (2, slots, 4) and batch["gt_classes"].shape == (2, slots)
        for k, image_id in enumerate(ids):
            h, w = MIXED_RESIZED[image_id]
            people = MIXED_IMAGES[image_id][2]
            np.testing.assert_array_equal(batch["image_size"][k], [h, w])
            assert batch["gt_count"][k] == people
            np.testing.assert_array_equal(batch["gt_classes"][k],
                                          [1] * people + [0] * (slots - people))
            assert (batch["gt_boxes"][k, people:] == 0).all()
            masks = batch["gt_masks"][k]
            assert (masks[people:] == 0).all()
            assert (masks[:, h:] == 0).all() and (masks[:, :, w:] == 0).all()
            image = batch["images"][k]
            assert (image[h:] == 0).all() and (image[:, w:] == 0).all()
            semantic, owner = batch["semantic"][k], batch["owner"][k]
            for label in (semantic, owner):
                assert (label[h:] == IGNORE).all() and (label[:, w:] == IGNORE).all()
            # Inside: grass and person stripes; the persons own their pixels.
            inside, person = semantic[:h, :w], SEMANTIC[PERSON]
            assert set(np.unique(inside)) == {SEMANTIC[GRASS]} | ({person} if people else set())
            np.testing.assert_array_equal(owner[:h, :w] == person, inside == person)


def test_an_image_without_instances_keeps_one_padding_slot(tmp_path):
    data = PanopticDataset.from_split(_mixed_split(str(tmp_path)))
    (batch,) = [b for b in _batches(data, _config(), batch_size=1) if b["image_id"][0] == 4]
    assert batch["gt_count"][0] == 0
    np.testing.assert_array_equal(batch["gt_classes"], [[0]])
    assert batch["gt_masks"].shape == (1, 1, 64, 32) and not batch["gt_masks"].any()


def _training_chunks(data, config, seed: int, chunks: int) -> list:
    """The first `chunks` grouping chunks of training batches of 2, as numpy dicts."""
    ds = build_dataset(data, config, training=True, batch_size=2, seed=seed)
    return [{k: v.numpy() for k, v in b.items()}
            for b in ds.take(chunks * pipeline.GROUP_BATCHES)]


def test_training_batches_hold_one_orientation_but_a_chunk_leftover(tmp_path):
    data = PanopticDataset.from_split(_mixed_split(str(tmp_path)))
    config = _config(scale_jitter=(0.7, 1.3), horizontal_flip=True)
    chunks = 3
    batches = _training_chunks(data, config, seed=4, chunks=chunks)
    for chunk in range(chunks):
        part = batches[chunk * pipeline.GROUP_BATCHES:(chunk + 1) * pipeline.GROUP_BATCHES]
        portrait = [[_is_portrait(i) for i in b["image_id"]] for b in part]
        mixed = [n for n, kinds in enumerate(portrait) if len(set(kinds)) > 1]
        # Batches of 2 of one orientation, and the odd ones out of each side as the last.
        odd = sum(not kind for kinds in portrait for kind in kinds) % 2
        assert mixed == ([pipeline.GROUP_BATCHES - 1] if odd else [])
    for batch in batches:
        height, width = _round_up(batch["image_size"].max(axis=0))
        assert batch["images"].shape[1:3] == (height, width)


# Buckets for MIXED_IMAGES: 1, 2 -> 32x32; 3, 5 -> 32x64; 4, 6, 8 -> 64x32; and 7 (96x24)
# fits none, so it shrinks by 64 / 96 to 64x16 (64x32).
BUCKETS = ((32, 32), (32, 64), (64, 32))
BUCKET_BATCHES = [((1, 2), (32, 32)), ((3, 5), (32, 64)), ((4, 6), (64, 32)), ((7, 8), (64, 32))]


def test_buckets_give_batch_shapes_and_shrink_what_fits_none(tmp_path):
    data = PanopticDataset.from_split(_mixed_split(str(tmp_path)))
    config = _config(buckets=BUCKETS)
    batches = _batches(data, config)
    assert [tuple(b["image_id"]) for b in batches] == [ids for ids, _ in BUCKET_BATCHES]
    for batch, (ids, size) in zip(batches, BUCKET_BATCHES):
        assert batch["images"].shape == (2, *size, 3)
        assert batch["gt_masks"].shape == (2, config.max_instances, *size)
        expected = [(64, 16) if i == 7 else MIXED_RESIZED[i] for i in ids]
        np.testing.assert_array_equal(batch["image_size"], expected)


def _smallest_bucket(size, buckets):
    """numpy reference: the smallest bucket (by area, first of equal ones) holding size."""
    holding = [b for b in buckets if size[0] <= b[0] and size[1] <= b[1]]
    return min(holding, key=lambda b: b[0] * b[1]) if holding else None


def test_bucket_groups_follow_the_scale_jitter(tmp_path):
    # The bucket of an image depends on its jittered size: grouping must draw the same
    # jitter as the augmentation, or batches mix buckets before a chunk's leftovers.
    buckets = ((32, 32), (32, 64), (64, 32), (64, 64), (128, 32))
    data = PanopticDataset.from_split(_mixed_split(str(tmp_path)))
    config = _config(scale_jitter=(0.6, 1.4), buckets=buckets)
    chunks = 2
    batches = _training_chunks(data, config, seed=9, chunks=chunks)
    kinds = set()
    for n, batch in enumerate(batches):
        own = {_smallest_bucket(size, buckets) for size in batch["image_size"]}
        kinds |= own
        if len(own) > 1:  # leftovers: among the last len(buckets) - 1 batches of a chunk
            assert n % pipeline.GROUP_BATCHES >= pipeline.GROUP_BATCHES - (len(buckets) - 1)
        largest = batch["image_size"].max(axis=0)
        assert batch["images"].shape[1:3] == _smallest_bucket(largest, buckets)
        assert batch["gt_masks"].shape[1] == config.max_instances
    assert len(kinds) > 2  # the jitter really moves images between buckets


def _group_order_reference(keys, num_groups, batch_size):
    """Each group's whole batches (groups in key order), then the rest (in key order)."""
    members = [[i for i, key in enumerate(keys) if key == group] for group in range(num_groups)]
    whole = [m[:len(m) // batch_size * batch_size] for m in members]
    rest = [m[len(m) // batch_size * batch_size:] for m in members]
    return [i for part in whole + rest for i in part]


@pytest.mark.parametrize("count", [48, 23, 0])
def test_group_order_matches_a_reference(count):
    num_groups, batch_size = 3, 4
    keys = np.random.default_rng(count).integers(0, num_groups, count).astype(np.int32)
    order = group_order(tf.constant(keys), num_groups, batch_size).numpy()
    assert order.tolist() == _group_order_reference(keys.tolist(), num_groups, batch_size)
