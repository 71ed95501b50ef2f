"""Score a model on a COCO-format split: predict it and measure PQ and overlap ownership
accuracy per merge order, and optionally the instance branch's detection quality and COCO
box / mask AP (the metrics themselves are `oanet_tf.evaluation`'s; the `evaluate` command,
`oanet_tf.cli.evaluate`, runs this on a model dir).

One detection pass per batch feeds every requested merge order, so the heuristic baseline
(detection order) and OANet (ranking order) are compared on exactly the same detections.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf
import tqdm

from oanet_tf.config import MERGE_ORDERS, DataConfig, EvalConfig
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.data.pipeline import ORIGINAL_KEYS, batches, build_dataset
from oanet_tf.evaluation.coco_ap import CocoAP
from oanet_tf.evaluation.detection import DetectionQuality
from oanet_tf.evaluation.ownership import OwnershipAccumulator
from oanet_tf.evaluation.pq import PQAccumulator
from oanet_tf.inference.postprocessor import image_segments
from oanet_tf.inference.predictor import PanopticPredictor
from oanet_tf.ops.mask_ops import MASK_THRESHOLD

ORDER_LABELS = dict(zip(MERGE_ORDERS, ("OANet (SRM ranking)", "heuristic (detection score)",
                                       "detection x ranking")))


@dataclasses.dataclass
class ScoredImage:
    """One image as `evaluate_model` scored it, handed to its `on_image` (e.g. for pictures)."""

    image_id: int
    image: np.ndarray  # uint8 [h0, w0, 3], the decoded file
    gt_panoptic: np.ndarray  # int32 [h0, w0], the ground-truth PNG's segment ids
    gt_segments: list  # their segments_info
    predictions: dict  # {order: (panoptic [h0, w0], segments_info)}
    detections: dict  # OANet.detect's outputs for the whole batch, tensors [B, ...]
    index: int  # the image's position in that batch
    image_size: np.ndarray  # int32 [2], size before padding of the model's input


def evaluate_model(model, dataset: PanopticDataset, data_config: DataConfig,
                   eval_config: EvalConfig, batch_size: int, orders=None, writers=None,
                   progress: bool = True, on_image=None,
                   detection_quality: DetectionQuality | None = None,
                   coco_ap: CocoAP | None = None) -> dict:
    """-> {order: {"pq": PQAccumulator.result(), "ownership": OwnershipAccumulator.result()}}.

    Each image and its PNG are decoded once, by the input pipeline, which also carries the
    ground truth at the original size. `writers` optionally maps an order to a PanopticWriter
    receiving its predictions; `on_image` is called with each ScoredImage;
    `detection_quality` and `coco_ap` are updated with each image's detections.
    """
    orders = tuple(orders or (eval_config.merge_order,))
    scores = _SplitScores(dataset, orders, writers or {})
    predictor = PanopticPredictor(model, dataset.categories, eval_config, orders)
    limit = eval_config.max_images or len(dataset)
    data = build_dataset(dataset, data_config, training=False, batch_size=batch_size,
                         repeat=False, ground_truth=True)
    done = 0
    with tqdm.tqdm(total=limit, desc="evaluate", unit="img", disable=not progress) as bar:
        for batch in batches(data):
            count = min(int(batch["image_id"].shape[0]), limit - done)
            detections = scores.add_batch(predictor, batch, count, on_image)
            if detection_quality is not None:
                _score_detections(detection_quality, batch, detections, count)
            if coco_ap is not None:
                _add_instances(coco_ap, dataset, batch, detections, count)
            done += count
            bar.update(count)
            if done >= limit:
                break
    return scores.finish()


class _SplitScores:
    """PQ and ownership accumulators per merge order, fed one predicted batch at a time, and
    the writers of each order's predictions."""

    def __init__(self, dataset: PanopticDataset, orders: tuple, writers: dict):
        self.dataset, self.orders, self.writers = dataset, orders, writers
        self.pq = {order: PQAccumulator(dataset.categories) for order in orders}
        self.ownership = {order: OwnershipAccumulator() for order in orders}
        self.thing_ids = np.asarray(dataset.categories.thing_ids)

    def add_batch(self, predictor: PanopticPredictor, batch: dict, count: int,
                  on_image=None) -> dict:
        """Predict a batch and score its first `count` images -> its detections."""
        detections, outputs = predictor(batch["images"], batch["image_size"],
                                        batch["original_size"])
        outputs = {order: {k: v.numpy() for k, v in outputs[order].items()}
                   for order in self.orders}
        truth = {key: batch[key].numpy() for key in (*ORIGINAL_KEYS, "original_size",
                                                     "image_size", "image_id")}
        for i in range(count):
            record = self.dataset.record(truth["image_id"][i])
            predictions = self._add_image(record, truth, i, outputs)
            if on_image is not None:
                height, width = truth["original_size"][i]
                on_image(ScoredImage(
                    record.image_id, truth["original_image"][i, :height, :width],
                    truth["original_panoptic"][i, :height, :width], list(record.segments),
                    predictions, detections, i, truth["image_size"][i]))
        return detections

    def _add_image(self, record, truth: dict, i: int, outputs: dict) -> dict:
        """Score image i of a batch in every order (and write it) -> {order: (panoptic,
        segments_info)}."""
        height, width = truth["original_size"][i]
        gt_ids = truth["original_panoptic"][i, :height, :width]
        instances = np.count_nonzero(truth["original_classes"][i])
        masks = truth["original_masks"][i, :instances, :height, :width].astype(bool)
        instance_categories = self.thing_ids[truth["original_classes"][i, :instances] - 1]
        predictions = {}
        for order in self.orders:
            panoptic, segments = predictions[order] = image_segments(outputs[order], i)
            self.pq[order].update(gt_ids, list(record.segments), panoptic, segments,
                                  where=record.png_file)
            self.ownership[order].update(masks, instance_categories, gt_ids,
                                         list(record.segments), panoptic, segments)
            if order in self.writers:
                self.writers[order].add(record.image_id, record.image_file, panoptic,
                                        segments, png_name=record.png_name)
        return predictions

    def finish(self) -> dict:
        """Close the writers -> evaluate_model's results."""
        for writer in self.writers.values():
            writer.close()
        return {order: {"pq": self.pq[order].result(),
                        "ownership": self.ownership[order].result()}
                for order in self.orders}


def _score_detections(quality: DetectionQuality, batch: dict, detections: dict, count: int):
    """Add the first `count` images of a batch: detections (at the padded input size) against
    the batch's resized instances."""
    out = {k: detections[k].numpy() for k in ("boxes", "classes", "scores", "instance_masks")}
    gt = {k: batch[k].numpy() for k in ("gt_boxes", "gt_classes", "gt_masks")}
    for i in range(count):
        quality.update(gt["gt_boxes"][i], gt["gt_classes"][i], gt["gt_masks"][i] > 0,
                       out["boxes"][i], out["classes"][i], out["scores"][i],
                       out["instance_masks"][i] >= MASK_THRESHOLD)


def _add_instances(coco_ap: CocoAP, dataset: PanopticDataset, batch: dict, detections: dict,
                   count: int):
    """Add the first `count` images of a batch to `coco_ap`: the batch's ground-truth
    instances plus the crowd thing segments of their panoptic PNGs (COCO ignores what
    matches those), and the detections at the original size."""
    thing_ids = np.asarray(dataset.categories.thing_ids)
    truth = {k: batch[k].numpy() for k in (*ORIGINAL_KEYS, "original_size", "image_size",
                                           "image_id")}
    for i in range(count):
        height, width = truth["original_size"][i]
        instances = np.count_nonzero(truth["original_classes"][i])
        gt_ids = truth["original_panoptic"][i, :height, :width]
        crowd = [s for s in dataset.record(truth["image_id"][i]).segments
                 if s.get("iscrowd") and dataset.categories.is_thing(s["category_id"])]
        gt_masks = np.concatenate([
            truth["original_masks"][i, :instances, :height, :width].astype(bool),
            np.asarray([gt_ids == s["id"] for s in crowd], bool).reshape(-1, height, width)])
        gt_categories = np.concatenate([
            thing_ids[truth["original_classes"][i, :instances] - 1],
            np.asarray([s["category_id"] for s in crowd], int)])
        boxes, scores, classes, masks = _detections_at_original_size(
            detections, i, truth["image_size"][i], (height, width))
        coco_ap.add_image(truth["image_id"][i], (height, width), gt_masks, gt_categories,
                          [0] * instances + [1] * len(crowd), boxes, scores,
                          thing_ids[classes - 1], masks)


def _detections_at_original_size(detections: dict, i: int, image_size, original_size):
    """Image i's detections (padding rows dropped) -> boxes [k, 4] (x, y, w, h) scaled to
    the original size, scores [k], detector classes [k], masks bool [k, h0, w0]: the pasted
    probabilities cropped to the image, resized bilinearly, thresholded."""
    keep = detections["classes"][i].numpy() > 0
    (height, width), (resized_h, resized_w) = original_size, image_size
    scale = np.array([height / resized_h, width / resized_w] * 2, np.float32)
    y1, x1, y2, x2 = np.moveaxis(detections["boxes"][i].numpy()[keep] * scale, -1, 0)
    probabilities = tf.boolean_mask(detections["instance_masks"][i], keep)
    masks = tf.image.resize(probabilities[:, :resized_h, :resized_w, tf.newaxis],
                            [height, width], method="bilinear")[..., 0]
    return (np.stack([x1, y1, x2 - x1, y2 - y1], axis=-1), detections["scores"][i].numpy()[keep],
            detections["classes"][i].numpy()[keep], masks.numpy() >= MASK_THRESHOLD)


def format_comparison(results: dict) -> str:
    """The heuristic-vs-SRM table: PQ, PQ_Th, PQ_St and ownership accuracy per merge order."""
    lines = [f"{'merge order':32s} {'PQ':>6s} {'PQ_Th':>6s} {'PQ_St':>6s} {'own.acc':>8s}"]
    for order, result in results.items():
        pq = result["pq"]
        own = result["ownership"]["accuracy"]
        lines.append(f"{ORDER_LABELS.get(order, order):32s} {100 * pq['All']['pq']:6.1f} "
                     f"{100 * pq['Things']['pq']:6.1f} {100 * pq['Stuff']['pq']:6.1f} "
                     f"{100 * own:8.1f}")
    return "\n".join(lines)
