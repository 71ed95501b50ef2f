"""Panoptic Quality with exactly the semantics of `panopticapi.evaluation.pq_compute`.

Rules (Kirillov et al., as the COCO panoptic API implements them):
- a ground-truth (GT) and a predicted segment match when they have the same category, the GT
  is not crowd and IoU > 0.5, where the union leaves out the prediction's pixels on void
  (id 0) ground truth;
- an unmatched non-crowd GT segment is a false negative (FN); crowd GT never is;
- an unmatched prediction is a false positive (FP) unless more than half of it lies on void
  or on the crowd GT segment of its own category (the last crowd segment of that category in
  `segments_info`, as pq_compute's dict keeps it);
- per category PQ = sum(IoU of matches) / (TP + FP/2 + FN/2), SQ = sum(IoU) / TP,
  RQ = TP / (TP + FP/2 + FN/2); All / Things / Stuff average over the categories that occur
  (TP + FP + FN > 0).
As in pq_compute, a GT segment's area is its JSON `area` when given (the pixel count
otherwise) and a prediction's area is always its pixel count.

Differences, all on input pq_compute rejects or crashes on: inconsistent PNG / JSON pairs
raise `DatasetError` for ground truth as well as predictions, and a group with no occurring
category (e.g. no stuff at all) reports 0 with n = 0 instead of dividing by zero.

The per-image work is vectorised: pixels are mapped to segment slots with one table lookup
and all GT x prediction intersections come from one `bincount`. From files, hotcoco scores
instead where it is installed (`evaluate_files`' engine, see `hotcoco_engine`): the same
numbers, faster; this evaluator stays the in-training streaming metric and the fallback.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading

import numpy as np

from oanet_tf.data.panoptic_format import (MAX_SEGMENT_ID, VOID_ID, CategoryMap,
                                           annotations_by_image, file_in,
                                           load_panoptic_json, read_id_png)
from oanet_tf.errors import DatasetError
from oanet_tf.evaluation import hotcoco_engine

MATCH_IOU = 0.5  # a match needs IoU strictly above this
IGNORED_FRACTION = 0.5  # an unmatched prediction more than this on void/crowd is not an FP
GROUPS = (("All", None), ("Things", True), ("Stuff", False))
# Statistics rows of the accumulator arrays.
IOU, TP, FP, FN = range(4)
IMAGES_PER_TASK = 16  # images a worker scores per task (amortises the inter-process traffic)
# Engines of evaluate_files: hotcoco where installed (auto), or either by name.
AUTO, HOTCOCO, NUMPY = "auto", "hotcoco", "numpy"
ENGINES = (AUTO, HOTCOCO, NUMPY)


class PQAccumulator:
    """Accumulates per-category IoU sums and TP / FP / FN counts over images."""

    def __init__(self, categories):
        """`categories`: COCO category dicts (with `id` and `isthing`) or a `CategoryMap`."""
        if isinstance(categories, CategoryMap):
            categories = categories.categories
        cats = sorted((dict(c) for c in categories), key=lambda c: c["id"])
        ids = [int(c["id"]) for c in cats]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate category ids: {ids}")
        self.category_ids = ids
        self.is_thing = np.array([c.get("isthing") == 1 for c in cats], dtype=bool)
        self.category_index = {cid: k for k, cid in enumerate(ids)}  # id -> row of stats
        self.stats = np.zeros((4, len(ids)), dtype=np.float64)  # rows IOU, TP, FP, FN

    def update(self, gt_ids, gt_segments, pred_ids, pred_segments, where: str = "image"):
        """Add one image.

        gt_ids, pred_ids: [H, W] integer segment-id maps (0 = void); gt_segments /
        pred_segments: COCO `segments_info` lists (dicts with id, category_id; GT also
        iscrowd and optionally area). `where` names the image in error messages.
        """
        self.stats += image_statistics(self, np.asarray(gt_ids), gt_segments,
                                       np.asarray(pred_ids), pred_segments, where)

    def merge(self, other: "PQAccumulator"):
        if other.category_ids != self.category_ids:
            raise ValueError("cannot merge PQ accumulators over different categories")
        self.stats += other.stats

    def result(self) -> dict:
        """{"All" | "Things" | "Stuff": {pq, sq, rq, n}, "per_class": {id: {pq, sq, rq, tp,
        fp, fn}}}, the values as plain Python numbers (fractions, not percent)."""
        iou, tp, fp, fn = self.stats
        denominator = tp + 0.5 * fp + 0.5 * fn
        occurs = (tp + fp + fn) > 0
        safe = np.where(occurs, denominator, 1.0)
        pq = np.where(occurs, iou / safe, 0.0)
        sq = np.where(tp > 0, iou / np.maximum(tp, 1.0), 0.0)
        rq = np.where(occurs, tp / safe, 0.0)
        results = {}
        for name, isthing in GROUPS:
            chosen = occurs if isthing is None else occurs & (self.is_thing == isthing)
            n = int(chosen.sum())
            results[name] = {key: float(values[chosen].sum() / n) if n else 0.0
                             for key, values in (("pq", pq), ("sq", sq), ("rq", rq))}
            results[name]["n"] = n
        results["per_class"] = {
            cid: {"pq": float(pq[k]), "sq": float(sq[k]), "rq": float(rq[k]),
                  "tp": int(tp[k]), "fp": int(fp[k]), "fn": int(fn[k])}
            for k, cid in enumerate(self.category_ids)}
        return results


def _segment_table(accumulator, segments, where: str, role: str):
    """The segments sorted by id: ids, category indices, crowd flags, JSON areas (-1 when
    absent) and positions in `segments_info`, [S] each."""
    try:
        raw_ids = [seg["id"] for seg in segments]
        categories = [seg["category_id"] for seg in segments]
        if not all(isinstance(i, int) for i in raw_ids):
            raise TypeError
    except (KeyError, TypeError):
        bad = next(seg for seg in segments
                   if not isinstance(seg, dict) or not isinstance(seg.get("id"), int)
                   or "category_id" not in seg)
        raise DatasetError(f"{where}: {role} segment {bad!r} needs an integer 'id' and a "
                           f"'category_id'") from None
    ids = np.array(raw_ids, np.int64)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    if len(ids) and (ids[0] <= VOID_ID or ids[-1] >= MAX_SEGMENT_ID):
        bad = ids[0] if ids[0] <= VOID_ID else ids[-1]
        raise DatasetError(f"{where}: {role} segment id {bad} is outside 1..{MAX_SEGMENT_ID - 1}"
                           f" (0 is void)")
    repeated = ids[1:][ids[1:] == ids[:-1]]
    if len(repeated):
        raise DatasetError(f"{where}: {role} segment id {repeated[0]} is listed twice in "
                           f"segments_info")
    index = accumulator.category_index
    try:
        cats = np.array([index[categories[i]] for i in order], np.int64)
    except (KeyError, TypeError):
        bad = next(seg for seg in segments
                   if not isinstance(seg["category_id"], int) or seg["category_id"] not in index)
        raise DatasetError(f"{where}: {role} segment {bad['id']}: unknown category_id "
                           f"{bad['category_id']!r}") from None
    crowd = np.array([segments[i].get("iscrowd", 0) == 1 for i in order], bool)
    area = np.array([segments[i].get("area", -1) for i in order], np.int64)
    return ids, cats, crowd, area, order


class _SlotTable(threading.local):
    """A segment id -> slot table over every possible id, one per thread.

    One gather maps a whole id map to slots, several times faster than a binary search. The
    table is allocated lazily with zeros (untouched pages cost no memory) and each call resets
    the entries it set, so it stays all zeros between calls.
    """

    table = None

    def slots(self, id_map: np.ndarray, sorted_ids: np.ndarray, where: str,
              role: str) -> np.ndarray:
        """[H*W] int32 slot of every pixel: 0 for void, 1 + k for the k-th segment in id
        order; raises on ids that are not listed."""
        if not np.issubdtype(id_map.dtype, np.integer):
            raise ValueError(f"{where}: {role} id map must hold integers, got {id_map.dtype}")
        flat = id_map.reshape(-1)
        if self.table is None:  # the last entry stays 0: ids out of range clip to it
            self.table = np.zeros(MAX_SEGMENT_ID + 1, np.int32)
        self.table[sorted_ids] = np.arange(1, len(sorted_ids) + 1)
        slot = np.take(self.table, flat, mode="clip")
        self.table[sorted_ids] = 0
        # Only void pixels may have slot 0; anything else is an id that is not listed.
        if np.count_nonzero(slot) + np.count_nonzero(flat == VOID_ID) != flat.size:
            missing = np.unique(flat[(slot == 0) & (flat != VOID_ID)])[:5].tolist()
            raise DatasetError(f"{where}: {role} segment id(s) {missing} are in the id map but "
                               f"not in segments_info")
        return slot


_SLOT_TABLE = _SlotTable()


def image_statistics(accumulator: PQAccumulator, gt_ids, gt_segments, pred_ids, pred_segments,
                     where: str) -> np.ndarray:
    """[4, K] IoU sum, TP, FP, FN per category for one image (rows IOU, TP, FP, FN)."""
    if gt_ids.ndim != 2 or gt_ids.shape != pred_ids.shape:
        raise DatasetError(f"{where}: expected two [H, W] id maps of one size, got ground "
                           f"truth {gt_ids.shape} and prediction {pred_ids.shape}")
    gt_seg, gt_cat, gt_crowd, gt_json_area, gt_position = _segment_table(
        accumulator, gt_segments, where, "ground-truth")
    pred_seg, pred_cat, _, _, _ = _segment_table(accumulator, pred_segments, where, "predicted")
    num_gt, num_pred = len(gt_seg) + 1, len(pred_seg) + 1  # slot 0 = void
    gt_slot = _SLOT_TABLE.slots(gt_ids, gt_seg, where, "ground-truth")
    pred_slot = _SLOT_TABLE.slots(pred_ids, pred_seg, where, "predicted")
    gt_slot *= num_pred
    gt_slot += pred_slot
    joint = np.bincount(gt_slot, minlength=num_gt * num_pred)
    joint = joint.reshape(num_gt, num_pred)  # [1 + S_gt, 1 + S_pred] pixel counts
    gt_pixels, pred_area = joint[1:].sum(axis=1), joint[:, 1:].sum(axis=0)
    for role, pixels, seg in (("ground-truth", gt_pixels, gt_seg),
                              ("predicted", pred_area, pred_seg)):
        if not pixels.all():
            raise DatasetError(f"{where}: {role} segment id(s) {seg[pixels == 0][:5].tolist()} "
                               f"are in segments_info but not in the id map")
    gt_area = np.where(gt_json_area >= 0, gt_json_area, gt_pixels)
    inter = joint[1:, 1:]
    pred_on_void = joint[0, 1:]
    union = pred_area[None, :] + gt_area[:, None] - inter - pred_on_void[None, :]
    candidate = (inter > 0) & (gt_cat[:, None] == pred_cat[None, :]) & ~gt_crowd[:, None]
    iou = np.divide(inter, union, out=np.zeros(inter.shape), where=candidate)
    match = candidate & (iou > MATCH_IOU)

    num_categories = len(accumulator.category_ids)
    stats = np.zeros((4, num_categories))
    gt_index, _ = np.nonzero(match)
    stats[IOU] = np.bincount(gt_cat[gt_index], weights=iou[match], minlength=num_categories)
    stats[TP] = np.bincount(gt_cat[gt_index], minlength=num_categories)
    missed = ~match.any(axis=1) & ~gt_crowd
    stats[FN] = np.bincount(gt_cat[missed], minlength=num_categories)

    crowd_slot = np.full(num_categories, -1)
    crowd = np.flatnonzero(gt_crowd)
    for slot in crowd[np.argsort(gt_position[crowd])]:  # a later one in segments_info wins
        crowd_slot[gt_cat[slot]] = slot
    pred_crowd = crowd_slot[pred_cat]  # [S_pred] crowd GT slot of the same category, or -1
    on_crowd = np.flatnonzero(pred_crowd >= 0)
    ignored = pred_on_void.copy()
    ignored[on_crowd] += inter[pred_crowd[on_crowd], on_crowd]
    false_positive = ~match.any(axis=0) & ~(ignored / pred_area > IGNORED_FRACTION)
    stats[FP] = np.bincount(pred_cat[false_positive], minlength=num_categories)
    return stats


def _pair_tasks(gt_json: str, gt_dir: str, pred_json: str, pred_dir: str,
                allow_outside_paths: bool = False):
    """Categories and (image label, gt png, gt segments, pred png, pred segments) per image;
    the PNGs must lie in their folders unless `allow_outside_paths` (`file_in`)."""
    gt = load_panoptic_json(gt_json, "ground-truth JSON")
    pred = load_panoptic_json(pred_json, "prediction JSON")
    categories = gt.get("categories")
    if not isinstance(categories, list) or not categories:
        raise DatasetError(f"{gt_json}: no 'categories' list")
    for cat in categories:
        if not isinstance(cat, dict) or "id" not in cat or "isthing" not in cat:
            raise DatasetError(f"{gt_json}: category {cat!r} needs 'id' and 'isthing'")
    gt_anns = annotations_by_image(gt, gt_json)
    pred_anns = annotations_by_image(pred, pred_json)
    missing = [image_id for image_id in gt_anns if image_id not in pred_anns]
    if missing:
        raise DatasetError(f"{pred_json}: no prediction for {len(missing)} ground-truth image(s), "
                           f"e.g. image id(s) {missing[:5]}")
    accumulator = PQAccumulator(categories)
    known = set(accumulator.category_ids)
    tasks = []
    for image_id, gt_ann in gt_anns.items():
        pred_ann = pred_anns[image_id]
        where = f"image {image_id}"
        # Categories are checked here so a bad JSON fails before any PNG is read.
        for ann, path, role in ((gt_ann, gt_json, "ground-truth"),
                                (pred_ann, pred_json, "predicted")):
            try:
                suspect = any(seg["category_id"] not in known for seg in ann["segments_info"])
            except (KeyError, TypeError):
                suspect = True
            if suspect:  # raises naming the segment
                _segment_table(accumulator, ann["segments_info"], f"{path}: {where}", role)
        tasks.append((where, file_in(gt_dir, gt_ann["file_name"], f"{gt_json}: {where}",
                                     allow_outside_paths), gt_ann["segments_info"],
                      file_in(pred_dir, pred_ann["file_name"], f"{pred_json}: {where}",
                              allow_outside_paths), pred_ann["segments_info"]))
    return categories, tasks


def _score_tasks(categories, tasks) -> np.ndarray:
    """[4, K] statistics summed over a list of image tasks."""
    accumulator = PQAccumulator(categories)
    for where, gt_png, gt_segments, pred_png, pred_segments in tasks:
        gt_ids = read_id_png(gt_png, "ground-truth")
        pred_ids = read_id_png(pred_png, "prediction")
        if gt_ids.shape != pred_ids.shape:
            raise DatasetError(f"{pred_png}: prediction PNG is {pred_ids.shape[0]}x"
                               f"{pred_ids.shape[1]} but the ground truth {gt_png} is "
                               f"{gt_ids.shape[0]}x{gt_ids.shape[1]} (height x width)")
        accumulator.update(gt_ids, gt_segments, pred_ids, pred_segments,
                           where=f"{where} ({gt_png} vs {pred_png})")
    return accumulator.stats


def _start_method() -> str:
    """fork is fastest, but forking a process that runs TensorFlow's threads is unsafe."""
    if "tensorflow" in sys.modules or "fork" not in multiprocessing.get_all_start_methods():
        return "spawn"
    return "fork"


def resolve_engine(engine: str) -> str:
    """auto -> hotcoco if installed, else numpy; hotcoco when it is missing -> an error."""
    if engine not in ENGINES:
        raise ValueError(f"PQ engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == AUTO:
        return HOTCOCO if hotcoco_engine.available() else NUMPY
    if engine == HOTCOCO and not hotcoco_engine.available():
        raise DatasetError("PQ engine hotcoco is not installed (pip install hotcoco); "
                           "use engine numpy")
    return engine


def evaluate_files(gt_json: str, gt_dir: str, pred_json: str, pred_dir: str,
                   workers: int | None = None, progress: bool = True,
                   engine: str = AUTO, allow_outside_paths: bool = False) -> dict:
    """PQ of COCO panoptic predictions (JSON + PNG folder) against ground truth; see
    `PQAccumulator.result` for the returned dict, plus "engine" (which one scored).
    Predictions for images absent from the ground truth are ignored.

    `engine` (ENGINES): hotcoco, or this module's numpy evaluator in `workers` processes
    (default: all cores). Both engines read the files the JSONs' checks accept (file names
    stay inside their folders unless `allow_outside_paths`); hotcoco rejects the inconsistent
    PNGs the numpy evaluator does (tests/evaluation/test_pq.py runs every bad case through
    both), and when it fails, the numpy evaluator runs to name the file and the problem."""
    engine = resolve_engine(engine)
    categories, tasks = _pair_tasks(gt_json, gt_dir, pred_json, pred_dir, allow_outside_paths)
    if engine == HOTCOCO:
        try:
            result = hotcoco_engine.evaluate(gt_json, gt_dir, pred_json, pred_dir)
        except Exception as error:  # hotcoco raises OSError, ValueError, ... on bad input
            _score_numpy(categories, tasks, workers, progress)  # raises naming the file
            raise DatasetError(f"{pred_json}: hotcoco failed where the numpy evaluator did "
                               f"not: {error}") from error
        return {**result, "engine": f"hotcoco {hotcoco_engine.version()}"}
    return {**_score_numpy(categories, tasks, workers, progress), "engine": NUMPY}


def _score_numpy(categories, tasks, workers, progress) -> dict:
    from tqdm import tqdm

    accumulator = PQAccumulator(categories)
    workers = max(1, min(int(workers or os.cpu_count() or 1), len(tasks)))
    per_task = max(1, min(IMAGES_PER_TASK, len(tasks) // (4 * workers)))
    chunks = [tasks[i:i + per_task] for i in range(0, len(tasks), per_task)]
    bar = tqdm(total=len(tasks), desc="PQ", unit="img", disable=not progress)
    with bar:
        if workers == 1:
            for chunk in chunks:
                accumulator.stats += _score_tasks(categories, chunk)
                bar.update(len(chunk))
        else:
            context = multiprocessing.get_context(_start_method())
            with context.Pool(workers) as pool:
                results = pool.imap(_score_chunk, [(categories, chunk) for chunk in chunks])
                for chunk, stats in zip(chunks, results):
                    accumulator.stats += stats
                    bar.update(len(chunk))
    return accumulator.result()


def _score_chunk(job) -> np.ndarray:
    return _score_tasks(*job)


def format_pq_table(result: dict) -> str:
    """The All / Things / Stuff table pq_compute prints (PQ, SQ, RQ in percent, N)."""
    lines = ["{:10s}| {:>5s}  {:>5s}  {:>5s} {:>5s}".format("", "PQ", "SQ", "RQ", "N"),
             "-" * (10 + 7 * 4)]
    for name, _ in GROUPS:
        row = result[name]
        lines.append("{:10s}| {:5.1f}  {:5.1f}  {:5.1f} {:5d}".format(
            name, 100 * row["pq"], 100 * row["sq"], 100 * row["rq"], row["n"]))
    return "\n".join(lines)


def format_per_class_table(result: dict, categories) -> str:
    """One row per category that occurs: id, name, thing/stuff, PQ SQ RQ (percent), TP FP FN."""
    names = {c["id"]: (c.get("name", ""), "thing" if c.get("isthing") == 1 else "stuff")
             for c in categories}
    lines = ["{:>5s} {:24s} {:5s} | {:>5s}  {:>5s}  {:>5s} {:>6s} {:>6s} {:>6s}".format(
        "id", "name", "kind", "PQ", "SQ", "RQ", "TP", "FP", "FN")]
    lines.append("-" * len(lines[0]))
    for cid, row in result["per_class"].items():
        if not row["tp"] + row["fp"] + row["fn"]:
            continue
        name, kind = names.get(cid, ("", ""))
        lines.append("{:5d} {:24s} {:5s} | {:5.1f}  {:5.1f}  {:5.1f} {:6d} {:6d} {:6d}".format(
            cid, name[:24], kind, 100 * row["pq"], 100 * row["sq"], 100 * row["rq"],
            row["tp"], row["fp"], row["fn"]))
    return "\n".join(lines)
