"""PanopticEvalCallback: the epoch logs carry evaluate_model's numbers and TensorBoard gets the
scalars, the learning rate and the overlays at the run's step; evaluations every N steps on
the first images; scheduling, chief detection and the ranking view."""

import glob
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.data.coco_panoptic import PanopticDataset, read_image
from oanet_tf.data.splits import resolve_split
from oanet_tf.inference.split_scoring import evaluate_model
from oanet_tf.training import callbacks
from oanet_tf.training.callbacks import EVAL_SUBDIR, PanopticEvalCallback, ranking_image
from oanet_tf.inference.trained_model import BEST_RECORD, LAST_WEIGHTS
from oanet_tf.training.trainer import train
from tests.tiny_model import tiny_config

MAX_IMAGES = 2
NUM_IMAGES = 2
ORDERS = ("detection", "ranking")
# The trained run: one epoch of 3 steps, PQ every 2 steps on the first image, and at the end.
STEPS, EVAL_EVERY_STEPS, STEP_IMAGES, EVAL_BATCH = 3, 2, 1, 1


def small_config(synthetic_dir, *overrides):
    return tiny_config(f"data.synthetic_dir={synthetic_dir}",
                       "data.short_side=96", "data.max_side=128", "data.max_instances=8",
                       "train.batch_size=2", "train.epochs=1", "train.steps_per_epoch=2",
                       "train.jit_compile='false'", f"eval.max_images={MAX_IMAGES}", *overrides)


def read_events(log_dir):
    """{tag: [(step, value or image shape)]} from every event file under log_dir."""
    found = {}
    for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor)
                if value.metadata.plugin_data.plugin_name == "images":
                    width, height = (int(s) for s in tensor[:2])
                    image = tf.io.decode_png(tensor[2]).numpy()
                    assert image.shape[:2] == (height, width)
                    found.setdefault(value.tag, []).append((event.step, image))
                else:
                    found.setdefault(value.tag, []).append((event.step, float(tensor)))
    return found


@pytest.fixture(scope="module")
def trained(synthetic_dir, tmp_path_factory):
    """The run, its val split, and (images scored, batch size, optimizer step) of each
    evaluation the callback ran."""
    config = small_config(synthetic_dir, f"train.steps_per_epoch={STEPS}",
                          f"train.eval_every_steps={EVAL_EVERY_STEPS}",
                          f"train.eval_step_images={STEP_IMAGES}",
                          f"eval.batch_size={EVAL_BATCH}",
                          f"train.checkpoint_every_steps={EVAL_EVERY_STEPS}")
    model_dir = str(tmp_path_factory.mktemp("callbacks") / "model")
    calls = []

    def spy(model, dataset, data_config, eval_config, batch_size, **kwargs):
        calls.append((eval_config.max_images, batch_size,
                      int(model.optimizer.iterations.numpy())))
        return evaluate_model(model, dataset, data_config, eval_config, batch_size, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(callbacks, "evaluate_model", spy)
        run = train(config, model_dir, "one_device", verbose=0)
    val = PanopticDataset.from_split(resolve_split(config.data, "val"))
    return config, run, val, calls


def test_evaluates_every_n_steps_on_the_first_images(trained):
    *_, calls = trained
    assert calls == [(STEP_IMAGES, EVAL_BATCH, EVAL_EVERY_STEPS), (MAX_IMAGES, EVAL_BATCH, STEPS)]


def test_checkpoints_mid_epoch_in_a_real_run(trained):
    # tests/training/test_checkpoints.py checks the numbers; here the validation pass runs
    # inside fit on OANet: best is step 2's or the epoch end's, whichever val_loss is lower.
    _, run, _, _ = trained
    with open(os.path.join(run.model_dir, BEST_RECORD)) as f:
        best = json.load(f)
    val_loss = run.history.history["val_loss"][-1]
    assert best["step"] in (EVAL_EVERY_STEPS, STEPS)
    assert best["val_loss"] <= val_loss
    assert (best["step"] == STEPS) == (best["val_loss"] == pytest.approx(val_loss))
    assert os.path.isfile(os.path.join(run.model_dir, LAST_WEIGHTS))


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-9)


def test_logs_hold_evaluate_model_numbers(trained):
    config, run, val, _ = trained
    expected = evaluate_model(run.model, val, config.data, config.eval, config.eval.batch_size,
                              orders=ORDERS, progress=False)
    history = run.history.history
    order = config.eval.merge_order
    for group, key in (("", "All"), ("_things", "Things"), ("_stuff", "Stuff")):
        for metric in ("pq", "sq", "rq"):
            assert same(history[f"val_{metric}{group}"][-1], expected[order]["pq"][key][metric])
    assert same(history["val_ownership_accuracy"][-1],
                expected[order]["ownership"]["accuracy"])
    final = run.final_evaluation  # what train returns: the last epoch's scores
    for o in ORDERS:
        for key in ("All", "Things", "Stuff"):
            assert same(final[o]["pq"][key]["pq"], expected[o]["pq"][key]["pq"])
        assert same(final[o]["ownership"]["accuracy"], expected[o]["ownership"]["accuracy"])

    events = read_events(os.path.join(run.model_dir, "logs", EVAL_SUBDIR))
    for o in ORDERS:
        for group, key in (("all", "All"), ("things", "Things"), ("stuff", "Stuff")):
            for metric in ("pq", "sq", "rq"):
                (step, _), (last_step, value) = events[f"{metric}/{o}/{group}"]
                assert (step, last_step) == (EVAL_EVERY_STEPS, STEPS)
                assert value == pytest.approx(expected[o]["pq"][key][metric], abs=1e-6)
        _, (_, value) = events[f"ownership/{o}"]
        assert same(value, np.float32(expected[o]["ownership"]["accuracy"]))
    _, (_, rate) = events["learning_rate"]
    optimizer = run.model.optimizer
    assert rate == pytest.approx(float(optimizer.learning_rate), rel=1e-6)


def test_images_are_written(trained):
    config, run, val, _ = trained
    events = read_events(os.path.join(run.model_dir, "logs", EVAL_SUBDIR))
    for k in range(NUM_IMAGES):
        height, width = read_image(val.records[k].image_file).shape[:2]
        # The step evaluation scores STEP_IMAGES images: it draws those only.
        steps = [STEPS] if k >= STEP_IMAGES else [EVAL_EVERY_STEPS, STEPS]
        for o in ORDERS:
            assert [step for step, _ in events[f"panoptic/{o}/{k}"]] == steps
            assert events[f"panoptic/{o}/{k}"][-1][1].shape == (height, 2 * width, 3)
        assert [step for step, _ in events[f"ranking_map/{k}"]] == steps
        assert events[f"ranking_map/{k}"][-1][1].shape == (height, width, 1)
    image_tags = {t for t in events if t.startswith(("panoptic/", "ranking_map/"))}
    assert len(image_tags) == NUM_IMAGES * (len(ORDERS) + 1)


def test_runs_every_n_epochs_and_after_the_last(synthetic_dir, tmp_path):
    config = small_config(synthetic_dir, "train.eval_every_epochs=2", "train.epochs=5")
    val = PanopticDataset.from_split(resolve_split(config.data, "val"))
    callback = PanopticEvalCallback(val, config, str(tmp_path))
    # A resumed run's first fit call may cover a single epoch: the run's last one counts.
    callback.set_params({"epochs": 1})
    assert [e for e in range(5) if callback._due(e)] == [1, 3, 4]


def test_merge_order_is_always_evaluated(synthetic_dir, tmp_path):
    config = small_config(synthetic_dir, "eval.merge_order=product")
    val = PanopticDataset.from_split(resolve_split(config.data, "val"))
    assert PanopticEvalCallback(val, config, str(tmp_path)).orders == (*ORDERS, "product")


def test_ranking_image_by_hand():
    ranking_map = np.zeros((2, 2, 2), np.float32)  # stride 2 over a 4x4 image, 2 thing classes
    ranking_map[0, 0] = [0.2, 0.8]
    ranking_map[1, 1] = [0.6, 0.4]
    ranking_map[0, 1] = [0.5, 0.5]
    masks = np.zeros((3, 4, 4), np.float32)
    masks[0, 0:2, 0:2] = 0.9  # covered: top-left block
    masks[1, 2:4, 2:4] = 0.9  # padding detection (class 0): not covered
    masks[2, 3, 0] = 0.3  # below the mask threshold: not covered
    out = ranking_image(ranking_map, masks, np.array([1, 0, 2]), (3, 4))
    expected = np.zeros((3, 4), np.float32)
    expected[0:2, 0:2] = 0.8
    np.testing.assert_allclose(out, expected)
