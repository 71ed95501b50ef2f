"""Predict a COCO-format split and score it: PQ and overlap ownership accuracy per merge order.

One detection pass per batch feeds every requested merge order, so the heuristic baseline
(detection order) and OANet (ranking order) are compared on exactly the same detections.
"""

from __future__ import annotations

import numpy as np
import tqdm

from oanet_tf.config import DataConfig, EvalConfig
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.data.pipeline import build_dataset
from oanet_tf.evaluation.detection import DetectionQuality
from oanet_tf.evaluation.ownership import OwnershipAccumulator
from oanet_tf.data.panoptic_format import read_id_png
from oanet_tf.evaluation.pq import PQAccumulator
from oanet_tf.inference.panoptic_merge import to_original_size
from oanet_tf.ops.mask_ops import MASK_THRESHOLD
from oanet_tf.inference.predictor import PanopticPredictor
from oanet_tf.inference.writer import segments_info


def image_prediction(merged: dict, index: int, image_size, original_size, categories):
    """One image of a merged batch -> (panoptic [h0, w0] at the original size, segments_info)."""
    panoptic = to_original_size(merged["panoptic"][index], image_size,
                                original_size).numpy()
    segments = segments_info(panoptic, merged["segment_ids"][index].numpy(),
                             merged["category"][index].numpy(), categories,
                             extra={"score": merged["detection_score"][index].numpy(),
                                    "ranking_score": merged["ranking_score"][index].numpy()})
    return panoptic, segments

ORDER_LABELS = {"detection": "heuristic (detection score)", "ranking": "OANet (SRM ranking)",
                "product": "detection x ranking"}


def evaluate_model(model, dataset: PanopticDataset, data_config: DataConfig,
                   eval_config: EvalConfig, batch_size: int, orders=None, writers=None,
                   progress: bool = True) -> dict:
    """-> {order: {"pq": PQAccumulator.result(), "ownership": OwnershipAccumulator.result()}}.

    `writers` optionally maps an order to a PanopticWriter receiving its predictions.
    """
    orders = tuple(orders or (eval_config.merge_order,))
    writers = writers or {}
    categories = dataset.categories
    predictor = PanopticPredictor(model, eval_config, orders)
    pq = {order: PQAccumulator(categories) for order in orders}
    ownership = {order: OwnershipAccumulator() for order in orders}
    index_of = {record.image_id: i for i, record in enumerate(dataset.records)}
    limit = eval_config.max_images or len(dataset)
    data = build_dataset(dataset, data_config, training=False, batch_size=batch_size,
                         repeat=False)
    done = 0
    with tqdm.tqdm(total=limit, desc="evaluate", unit="img", disable=not progress) as bar:
        for batch in data:
            _, merged = predictor(batch["images"], batch["image_size"], batch["original_size"])
            for i, image_id in enumerate(batch["image_id"].numpy().tolist()):
                if done >= limit:
                    break
                record = dataset.record(image_id)
                gt_ids = read_id_png(record.png_file, "ground truth")
                example = dataset.load_example(index_of[image_id])
                thing_ids = np.asarray(categories.thing_ids)
                instance_categories = thing_ids[example["classes"] - 1]
                for order in orders:
                    panoptic, segments = image_prediction(
                        merged[order], i, batch["image_size"][i], batch["original_size"][i],
                        categories)
                    pq[order].update(gt_ids, list(record.segments), panoptic, segments,
                                     where=record.png_file)
                    ownership[order].update(example["masks"].astype(bool), instance_categories,
                                            gt_ids, list(record.segments), panoptic, segments)
                    if order in writers:
                        writers[order].add(image_id, record.image_file, panoptic, segments)
                done += 1
                bar.update(1)
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
    counting detections down to `score_threshold` (default: the model's test threshold)."""
    import tensorflow as tf

    detect = tf.function(model.detect, reduce_retracing=True)
    quality = DetectionQuality(model.test_score_threshold if score_threshold is None
                               else score_threshold)
    limit = max_images or len(dataset)
    seen = 0
    for batch in build_dataset(dataset, data_config, training=False, batch_size=batch_size,
                               repeat=False):
        out = {k: v.numpy() for k, v in detect(batch["images"]).items()}
        gt = {k: batch[k].numpy() for k in ("gt_boxes", "gt_classes", "gt_masks")}
        for i in range(len(gt["gt_classes"])):
            if seen >= limit:
                break
            quality.update(gt["gt_boxes"][i], gt["gt_classes"][i], gt["gt_masks"][i] > 0,
                           out["boxes"][i], out["classes"][i], out["scores"][i],
                           out["instance_masks"][i] >= MASK_THRESHOLD)
            seen += 1
        if seen >= limit:
            break
    return quality.result()


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
