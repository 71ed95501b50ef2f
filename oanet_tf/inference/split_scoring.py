"""Predict a COCO-format split and score it: PQ and overlap ownership accuracy per merge order.

One detection pass per batch feeds every requested merge order, so the heuristic baseline
(detection order) and OANet (ranking order) are compared on exactly the same detections.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tqdm

from oanet_tf.config import MERGE_ORDERS, DataConfig, EvalConfig
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.data.pipeline import ORIGINAL_KEYS, batches, build_dataset
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
                   detection_quality: DetectionQuality | None = None) -> dict:
    """-> {order: {"pq": PQAccumulator.result(), "ownership": OwnershipAccumulator.result()}}.

    Each image and its PNG are decoded once, by the input pipeline, which also carries the
    ground truth at the original size. `writers` optionally maps an order to a PanopticWriter
    receiving its predictions; `on_image` is called with each ScoredImage;
    `detection_quality` is updated with each image's detections.
    """
    orders = tuple(orders or (eval_config.merge_order,))
    writers = writers or {}
    categories = dataset.categories
    predictor = PanopticPredictor(model, categories, eval_config, orders)
    pq = {order: PQAccumulator(categories) for order in orders}
    ownership = {order: OwnershipAccumulator() for order in orders}
    thing_ids = np.asarray(categories.thing_ids)
    limit = eval_config.max_images or len(dataset)
    data = build_dataset(dataset, data_config, training=False, batch_size=batch_size,
                         repeat=False, ground_truth=True)
    done = 0
    with tqdm.tqdm(total=limit, desc="evaluate", unit="img", disable=not progress) as bar:
        for batch in batches(data):
            detections, outputs = predictor(batch["images"], batch["image_size"],
                                            batch["original_size"])
            outputs = {order: {k: v.numpy() for k, v in outputs[order].items()}
                       for order in orders}
            truth = {key: batch[key].numpy() for key in (*ORIGINAL_KEYS, "original_size",
                                                         "image_size", "image_id")}
            count = min(len(truth["image_id"]), limit - done)
            if detection_quality is not None:
                _score_detections(detection_quality, batch, detections, count)
            for i in range(count):
                record = dataset.record(truth["image_id"][i])
                height, width = truth["original_size"][i]
                gt_ids = truth["original_panoptic"][i, :height, :width]
                instances = np.count_nonzero(truth["original_classes"][i])
                masks = truth["original_masks"][i, :instances, :height, :width].astype(bool)
                instance_categories = thing_ids[truth["original_classes"][i, :instances] - 1]
                predictions = {}
                for order in orders:
                    panoptic, segments = predictions[order] = image_segments(outputs[order], i)
                    pq[order].update(gt_ids, list(record.segments), panoptic, segments,
                                     where=record.png_file)
                    ownership[order].update(masks, instance_categories, gt_ids,
                                            list(record.segments), panoptic, segments)
                    if order in writers:
                        writers[order].add(record.image_id, record.image_file, panoptic,
                                           segments, png_name=record.png_name)
                if on_image is not None:
                    on_image(ScoredImage(
                        record.image_id, truth["original_image"][i, :height, :width], gt_ids,
                        list(record.segments), predictions, detections, i,
                        truth["image_size"][i]))
            done += count
            bar.update(count)
            if done >= limit:
                break
    for writer in writers.values():
        writer.close()
    return {order: {"pq": pq[order].result(), "ownership": ownership[order].result()}
            for order in orders}


def evaluate_detections(model, dataset: PanopticDataset, data_config: DataConfig,
                        batch_size: int, max_images: int = 0,
                        score_threshold: float | None = None) -> dict:
    """Recall and mask IoU of the instance branch on a split (DetectionQuality.result()),
    counting detections down to `score_threshold` (default: the model's test threshold),
    without the panoptic merge."""
    import tensorflow as tf

    detect = tf.function(model.detect, reduce_retracing=True)
    quality = DetectionQuality(model.test_score_threshold if score_threshold is None
                               else score_threshold)
    limit = max_images or len(dataset)
    seen = 0
    for batch in batches(build_dataset(dataset, data_config, training=False,
                                       batch_size=batch_size, repeat=False)):
        count = min(int(batch["image_id"].shape[0]), limit - seen)
        _score_detections(quality, batch, detect(batch["images"], batch["image_size"]), count)
        seen += count
        if seen >= limit:
            break
    return quality.result()


def _score_detections(quality: DetectionQuality, batch: dict, detections: dict, count: int):
    """Add the first `count` images of a batch: detections (at the padded input size) against
    the batch's resized instances."""
    out = {k: detections[k].numpy() for k in ("boxes", "classes", "scores", "instance_masks")}
    gt = {k: batch[k].numpy() for k in ("gt_boxes", "gt_classes", "gt_masks")}
    for i in range(count):
        quality.update(gt["gt_boxes"][i], gt["gt_classes"][i], gt["gt_masks"][i] > 0,
                       out["boxes"][i], out["classes"][i], out["scores"][i],
                       out["instance_masks"][i] >= MASK_THRESHOLD)


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
