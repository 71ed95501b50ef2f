"""Periodic panoptic evaluation during training, logged to Keras and to TensorBoard.

Every `train.eval_every_epochs` epochs (and after the last one) the validation split is merged
and scored (PQ, SQ, RQ and overlap ownership accuracy) for each requested merge order, in
batches of `eval.batch_size`; also every `train.eval_every_steps` steps, on the split's first
`train.eval_step_images` images. After an epoch the configured order's numbers go into the
epoch `logs` as `val_pq`, ... so that callbacks can monitor them; every order's numbers, the
learning rate and a few overlays (prediction | ground truth, and the SRM ranking map, of the
first evaluated images) go to `<log_dir>/eval` via tf.summary, at the run's step (a resumed
run goes on counting). The overlays come from the evaluation's own pass: nothing is decoded
or predicted a second time.
"""

from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf

from oanet_tf.cluster import is_chief
from oanet_tf.config import DETECTION, RANKING, Config
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.inference.split_scoring import ScoredImage, evaluate_model
from oanet_tf.inference.visualize import overlay, side_by_side
from oanet_tf.ops.mask_ops import MASK_THRESHOLD

EVAL_SUBDIR = "eval"
PQ_GROUPS = {"all": "All", "things": "Things", "stuff": "Stuff"}
PQ_METRICS = ("pq", "sq", "rq")


def epoch_logs(result: dict) -> dict:
    """One merge order's evaluate_model result -> the Keras log entries: val_pq, val_sq, val_rq,
    val_{pq,sq,rq}_{things,stuff} and val_ownership_accuracy."""
    logs = {}
    for group, key in PQ_GROUPS.items():
        suffix = "" if group == "all" else f"_{group}"
        for metric in PQ_METRICS:
            logs[f"val_{metric}{suffix}"] = float(result["pq"][key][metric])
    logs["val_ownership_accuracy"] = float(result["ownership"]["accuracy"])
    return logs


def scalar_summaries(results: dict) -> dict:
    """evaluate_model results -> {tag: value}: "{pq,sq,rq}/<order>/{all,things,stuff}" and
    "ownership/<order>" (accuracy)."""
    scalars = {}
    for order, result in results.items():
        for group, key in PQ_GROUPS.items():
            for metric in PQ_METRICS:
                scalars[f"{metric}/{order}/{group}"] = float(result["pq"][key][metric])
        scalars[f"ownership/{order}"] = float(result["ownership"]["accuracy"])
    return scalars


def ranking_image(ranking_map, instance_masks, classes, image_size) -> np.ndarray:
    """The SRM's view of one image, for display.

    ranking_map [h, w, T] (SRM scores at stride H / h), instance_masks [D, H, W] (pasted
    probabilities), classes [D] (0 = none), image_size (ih, iw) ->
    [ih, iw] float32 in [0, 1]: the max over thing channels where a detection covers the pixel,
    0 elsewhere.
    """
    ranking_map = np.asarray(ranking_map, np.float32)
    masks = np.asarray(instance_masks)
    height, width = masks.shape[1:]
    stride_y, stride_x = height // ranking_map.shape[0], width // ranking_map.shape[1]
    score = ranking_map.max(axis=-1).repeat(stride_y, axis=0).repeat(stride_x, axis=1)
    valid = np.asarray(classes) > 0
    covered = ((masks >= MASK_THRESHOLD) & valid[:, None, None]).any(axis=0)
    ih, iw = (int(s) for s in image_size)
    return np.where(covered, score, 0.0).astype(np.float32)[:ih, :iw]


class PanopticEvalCallback(keras.callbacks.Callback):
    """Scores the validation split every `config.train.eval_every_epochs` epochs and after the
    last one; see the module docstring for what is logged where."""

    def __init__(self, val_dataset: PanopticDataset, config: Config, log_dir: str,
                 orders=(DETECTION, RANKING), num_images: int = 2, steps_done: int = 0):
        super().__init__()
        if config.train.eval_every_epochs < 1:
            raise ValueError(f"train.eval_every_epochs must be >= 1, got "
                             f"{config.train.eval_every_epochs}")
        if num_images < 0:
            raise ValueError(f"num_images must be >= 0, got {num_images}")
        self.val_dataset = val_dataset
        self.config = config
        self.log_dir = os.path.join(log_dir, EVAL_SUBDIR)
        merge_order = config.eval.merge_order
        self.orders = tuple(orders) + (() if merge_order in orders else (merge_order,))
        self.num_images = min(num_images, len(val_dataset))
        self.step = int(steps_done)
        self._step_due = False  # a step evaluation that falls on the epoch's end
        self._writer = None
        self.final_results = None  # evaluate_model's results after the run's last epoch

    def _due(self, epoch: int) -> bool:
        # The run's last epoch, not the fit call's: a resumed run may call fit twice.
        last = self.config.train.epochs
        return (epoch + 1) % self.config.train.eval_every_epochs == 0 or epoch + 1 == last

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        every = self.config.train.eval_every_steps
        if not every or self.step % every:
            return
        if batch + 1 == self.params["steps"]:
            self._step_due = True  # on_epoch_end evaluates, and its logs get the numbers
            return
        step_images = self.config.train.eval_step_images
        eval_config = (dataclasses.replace(self.config.eval, max_images=step_images)
                       if step_images else self.config.eval)
        self._evaluate(eval_config)

    def on_epoch_end(self, epoch, logs=None):
        step_due, self._step_due = self._step_due, False
        if not (self._due(epoch) or step_due):
            return
        results = self._evaluate(self.config.eval)
        if epoch + 1 == self.config.train.epochs:
            self.final_results = results
        if logs is not None and results is not None:
            logs.update(epoch_logs(results[self.config.eval.merge_order]))

    def _evaluate(self, eval_config) -> dict | None:
        """Score the split as `eval_config` says and write the summaries at this step (on
        the chief; None elsewhere)."""
        if not is_chief(getattr(self.model, "distribute_strategy", None)):
            return None
        drawn = []  # the pictures of the first num_images images, in evaluation order

        def draw(scored: ScoredImage):
            if len(drawn) < self.num_images:
                drawn.append(self._pictures(scored))

        results = evaluate_model(self.model, self.val_dataset, self.config.data, eval_config,
                                 eval_config.batch_size, orders=self.orders, progress=False,
                                 on_image=draw)
        self._summarize(self.step, results, {f"{tag}/{k}": picture for k, pictures in
                                             enumerate(drawn)
                                             for tag, picture in pictures.items()})
        return results

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _summarize(self, step: int, results: dict, pictures: dict):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default(step=step):
            for tag, value in scalar_summaries(results).items():
                tf.summary.scalar(tag, value)
            optimizer = getattr(self.model, "optimizer", None)
            if optimizer is not None:
                tf.summary.scalar("learning_rate",
                                  float(keras.ops.convert_to_numpy(optimizer.learning_rate)))
            for tag, picture in pictures.items():
                tf.summary.image(tag, picture[np.newaxis], max_outputs=1)
        self._writer.flush()

    def _pictures(self, scored: ScoredImage) -> dict:
        """{tag: [h, w, C] picture} of one scored image: "panoptic/<order>" prediction |
        ground truth uint8 [h0, 2 w0, 3], and "ranking_map" float32 [ih, iw, 1] (see
        ranking_image)."""
        categories = self.val_dataset.categories
        truth = overlay(scored.image, scored.gt_panoptic, scored.gt_segments, categories)
        pictures = {}
        for order in self.orders:
            panoptic, segments = scored.predictions[order]
            pictures[f"panoptic/{order}"] = side_by_side(
                overlay(scored.image, panoptic, segments, categories), truth)
        ranking_map, masks, classes = (scored.detections[key][scored.index].numpy() for key in
                                       ("ranking_map", "instance_masks", "classes"))
        pictures["ranking_map"] = ranking_image(ranking_map, masks, classes,
                                                scored.image_size)[..., np.newaxis]
        return pictures
