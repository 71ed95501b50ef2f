"""Panoptic Quality: a hand-computed case, agreement with panopticapi's pq_compute on every
number (random, real COCO and synthetic data), error reporting, the CLI and the in-graph
Keras metric (checked against the numpy accumulator)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from panopticapi.evaluation import pq_compute
from PIL import Image

from oanet_tf.__main__ import main
from oanet_tf.data.panoptic_format import CategoryMap, id_to_rgb
from oanet_tf.errors import DatasetError
from oanet_tf.evaluation.perturb import perturb_image, perturb_panoptic
from oanet_tf.evaluation.pq import PQAccumulator, evaluate_files, format_pq_table, read_id_png

TOLERANCE = 1e-9
METRIC_TOLERANCE = 1e-6
GROUP_NAMES = ("All", "Things", "Stuff")

# Three thing categories (few, so that two crowd segments of one category happen) and three
# stuff categories, with non-contiguous ids.
CATEGORIES = [
    {"id": 1, "name": "person", "isthing": 1, "supercategory": "person", "color": [220, 20, 60]},
    {"id": 3, "name": "car", "isthing": 1, "supercategory": "vehicle", "color": [0, 0, 142]},
    {"id": 18, "name": "dog", "isthing": 1, "supercategory": "animal", "color": [100, 0, 0]},
    {"id": 119, "name": "sky", "isthing": 0, "supercategory": "sky", "color": [70, 130, 180]},
    {"id": 125, "name": "grass", "isthing": 0, "supercategory": "plant", "color": [0, 200, 0]},
    {"id": 149, "name": "road", "isthing": 0, "supercategory": "ground", "color": [128, 64, 128]},
]


# ---------------------------------------------------------------------------- dataset helpers

def segments_of(id_map: np.ndarray, category_of: dict, crowd_of: dict | None = None) -> list:
    """COCO segments_info of the ids present in an id map."""
    info = []
    for segment_id, area in zip(*np.unique(id_map, return_counts=True)):
        if segment_id == 0:
            continue
        info.append({"id": int(segment_id), "category_id": int(category_of[int(segment_id)]),
                     "area": int(area), "bbox": [0, 0, 1, 1],
                     "iscrowd": int((crowd_of or {}).get(int(segment_id), 0))})
    return info


def write_dataset(root: str, name: str, images: list, categories=CATEGORIES):
    """Write `images` [(image_id, id_map, segments_info)] as root/name.json + root/name/."""
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    annotations = []
    for image_id, id_map, info in images:
        file_name = f"{image_id:06d}.png"
        Image.fromarray(id_to_rgb(id_map)).save(os.path.join(folder, file_name))
        annotations.append({"image_id": image_id, "file_name": file_name, "segments_info": info})
    json_path = os.path.join(root, name + ".json")
    with open(json_path, "w") as f:
        json.dump({"images": [{"id": i, "file_name": f"{i:06d}.jpg", "height": m.shape[0],
                               "width": m.shape[1]} for i, m, _ in images],
                   "annotations": annotations, "categories": categories}, f)
    return json_path, folder


def random_ids(rng, count):
    return (1 + rng.choice(256 ** 3 - 1, size=count, replace=False)).tolist()


def random_box(rng, height, width, low=0.15, high=0.6):
    box_h = max(1, int(rng.uniform(low, high) * height))
    box_w = max(1, int(rng.uniform(low, high) * width))
    top, left = rng.integers(0, height - box_h + 1), rng.integers(0, width - box_w + 1)
    mask = np.zeros((height, width), bool)
    mask[top:top + box_h, left:left + box_w] = True
    return mask


def random_gt_image(rng, height=20, width=28):
    """A GT id map with stuff bands, overlapping things (some crowd) and void boxes."""
    things = [c["id"] for c in CATEGORIES if c["isthing"]]
    stuff = [c["id"] for c in CATEGORIES if not c["isthing"]]
    painted = []  # (mask, category, iscrowd)
    cuts = np.sort(rng.choice(np.arange(1, height), size=2, replace=False))
    for band, category in zip(np.split(np.arange(height), cuts), rng.permutation(stuff)):
        mask = np.zeros((height, width), bool)
        mask[band] = True
        painted.append((mask, int(category), 0))
    for _ in range(rng.integers(2, 7)):
        painted.append((random_box(rng, height, width), int(rng.choice(things)),
                        int(rng.random() < 0.3)))
    id_map = np.zeros((height, width), np.int64)
    ids = random_ids(rng, len(painted))
    for (mask, _, _), segment_id in zip(painted, ids):
        id_map[mask] = segment_id
    for _ in range(rng.integers(1, 3)):
        id_map[random_box(rng, height, width, 0.1, 0.35)] = 0
    category_of = {i: c for (_, c, _), i in zip(painted, ids)}
    crowd_of = {i: crowd for (_, _, crowd), i in zip(painted, ids)}
    return id_map, segments_of(id_map, category_of, crowd_of)


def random_prediction(rng, gt_ids, gt_segments):
    """perturb_image's prediction plus segments placed on void and on crowd regions."""
    pred_ids, info = perturb_image(gt_ids, gt_segments, [c["id"] for c in CATEGORIES], rng)
    category_of = {s["id"]: s["category_id"] for s in info}
    extra = []  # (mask, category)
    void = gt_ids == 0
    if void.any() and rng.random() < 0.7:  # mostly on void, a random category
        extra.append((void | (random_box(rng, *gt_ids.shape, 0.05, 0.2) & ~void),
                      int(rng.choice([c["id"] for c in CATEGORIES]))))
    for seg in gt_segments:
        if seg["iscrowd"] and rng.random() < 0.7:  # on a crowd region, own or other category
            same = rng.random() < 0.7
            things = [c["id"] for c in CATEGORIES if c["isthing"]]
            category = seg["category_id"] if same else int(rng.choice(things))
            extra.append((gt_ids == seg["id"], category))
    for (mask, category), segment_id in zip(extra, random_ids(rng, len(extra))):
        pred_ids[mask] = segment_id
        category_of[segment_id] = category
    return pred_ids, segments_of(pred_ids, category_of)


def random_dataset(root: str, seed: int, num_images: int = 6, height=20, width=28):
    rng = np.random.default_rng(seed)
    gt_images, pred_images = [], []
    for image_id in range(1, num_images + 1):
        gt_ids, gt_info = random_gt_image(rng, height, width)
        pred_ids, pred_info = random_prediction(rng, gt_ids, gt_info)
        gt_images.append((image_id, gt_ids, gt_info))
        pred_images.append((image_id, pred_ids, pred_info))
    return write_dataset(root, "gt", gt_images) + write_dataset(root, "pred", pred_images)


def assert_same_as_pq_compute(gt_json, gt_dir, pred_json, pred_dir, workers=1):
    ours = evaluate_files(gt_json, gt_dir, pred_json, pred_dir, workers=workers, progress=False)
    reference = pq_compute(gt_json, pred_json, gt_dir, pred_dir)
    for name in GROUP_NAMES:
        assert ours[name]["n"] == reference[name]["n"], name
        for key in ("pq", "sq", "rq"):
            assert ours[name][key] == pytest.approx(reference[name][key], abs=TOLERANCE), \
                (name, key)
    assert set(ours["per_class"]) == set(reference["per_class"])
    for category_id, expected in reference["per_class"].items():
        for key in ("pq", "sq", "rq"):
            assert ours["per_class"][category_id][key] == pytest.approx(expected[key],
                                                                       abs=TOLERANCE)
    return ours


# ---------------------------------------------------------------------------- hand-computed

HAND_CATEGORIES = [{"id": 1, "name": "person", "isthing": 1},
                   {"id": 2, "name": "dog", "isthing": 1},
                   {"id": 3, "name": "cat", "isthing": 1},
                   {"id": 10, "name": "sky", "isthing": 0}]


def hand_case():
    """One 4 x 12 image. Columns of the ground truth:
    0-3 person A (16 px) | 4-5 person crowd B (8 px) | 6-7 rows 0-1 dog C (4 px), rows 2-3
    void | 8-9 sky D (8 px) | 10-11 void.
    Prediction: 0-2 person a | 3-5 person b | 6-7 dog c | 8-9 row 0 sky d, rows 1-3 dog e |
    10-11 sky f."""
    gt = np.zeros((4, 12), np.int64)
    gt[:, 0:4], gt[:, 4:6], gt[0:2, 6:8], gt[:, 8:10] = 11, 12, 13, 14
    gt_segments = [{"id": 11, "category_id": 1, "iscrowd": 0},
                   {"id": 12, "category_id": 1, "iscrowd": 1},
                   {"id": 13, "category_id": 2, "iscrowd": 0},
                   {"id": 14, "category_id": 10, "iscrowd": 0}]
    pred = np.zeros((4, 12), np.int64)
    pred[:, 0:3], pred[:, 3:6], pred[:, 6:8], pred[0, 8:10] = 21, 22, 23, 24
    pred[1:, 8:10], pred[:, 10:12] = 25, 26
    pred_segments = [{"id": 21, "category_id": 1}, {"id": 22, "category_id": 1},
                     {"id": 23, "category_id": 2}, {"id": 24, "category_id": 10},
                     {"id": 25, "category_id": 2}, {"id": 26, "category_id": 10}]
    return gt, gt_segments, pred, pred_segments


def test_hand_computed_case():
    # person: a-A IoU 12 / (12 + 16 - 12) = 0.75 -> TP. b (12 px) has IoU 4 / 24 with A, but
    #   8 of its 12 px lie on the person crowd B -> ignored, not an FP. B is crowd: no FN.
    # dog: c-C intersection 4, c has 8 px of which 4 on void: IoU 4 / (8 + 4 - 4 - 4) = 1 ->
    #   TP (without removing void it would be 0.5, no match). e lies on sky -> FP.
    # sky: d-D IoU 2 / (2 + 8 - 2) = 0.25 -> d is an FP and D an FN; f lies on void -> ignored.
    # cat: no segment -> not counted.
    expected_class = {1: (0.75, 0.75, 1.0, 1, 0, 0), 2: (2 / 3, 1.0, 2 / 3, 1, 1, 0),
                      3: (0.0, 0.0, 0.0, 0, 0, 0), 10: (0.0, 0.0, 0.0, 0, 1, 1)}
    expected = {"Things": (np.mean([0.75, 2 / 3]), np.mean([0.75, 1.0]), np.mean([1, 2 / 3]), 2),
                "Stuff": (0.0, 0.0, 0.0, 1),
                "All": ((0.75 + 2 / 3) / 3, 1.75 / 3, (1 + 2 / 3) / 3, 3)}
    accumulator = PQAccumulator(HAND_CATEGORIES)
    accumulator.update(*hand_case())
    result = accumulator.result()
    for name, (pq, sq, rq, n) in expected.items():
        assert result[name]["n"] == n
        assert [result[name][k] for k in ("pq", "sq", "rq")] == pytest.approx([pq, sq, rq],
                                                                             abs=1e-12)
    for category_id, values in expected_class.items():
        row = result["per_class"][category_id]
        assert [row[k] for k in ("pq", "sq", "rq", "tp", "fp", "fn")] == \
            pytest.approx(list(values), abs=1e-12)
    table = format_pq_table(result).splitlines()
    assert table[2].split() == ["All", "|", "47.2", "58.3", "55.6", "3"]


def test_hand_case_matches_pq_compute(tmp_path):
    gt, gt_segments, pred, pred_segments = hand_case()
    gt_info = segments_of(gt, {s["id"]: s["category_id"] for s in gt_segments},
                          {s["id"]: s["iscrowd"] for s in gt_segments})
    pred_info = segments_of(pred, {s["id"]: s["category_id"] for s in pred_segments})
    gt_files = write_dataset(str(tmp_path), "gt", [(7, gt, gt_info)], HAND_CATEGORIES)
    pred_files = write_dataset(str(tmp_path), "pred", [(7, pred, pred_info)], HAND_CATEGORIES)
    assert_same_as_pq_compute(*gt_files, *pred_files)


def test_merge_equals_one_pass():
    rng = np.random.default_rng(5)
    images = []
    for _ in range(4):
        gt_ids, gt_info = random_gt_image(rng)
        images.append((gt_ids, gt_info) + random_prediction(rng, gt_ids, gt_info))
    whole, first, second = (PQAccumulator(CATEGORIES) for _ in range(3))
    for index, image in enumerate(images):
        whole.update(*image)
        (first if index % 2 else second).update(*image)
    first.merge(second)
    np.testing.assert_allclose(first.stats, whole.stats, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="different categories"):
        first.merge(PQAccumulator(HAND_CATEGORIES))


# ---------------------------------------------------------------------------- vs pq_compute

def ignorable_predictions(gt_json, gt_dir, pred_json, pred_dir) -> dict:
    """How many predictions lie more than half on void, and on a same-class crowd segment."""
    counts = {"void": 0, "crowd": 0}
    with open(gt_json) as f:
        gt_anns = {a["image_id"]: a for a in json.load(f)["annotations"]}
    with open(pred_json) as f:
        pred_anns = json.load(f)["annotations"]
    for pred_ann in pred_anns:
        gt_ann = gt_anns[pred_ann["image_id"]]
        gt = read_id_png(os.path.join(gt_dir, gt_ann["file_name"]), "gt")
        pred = read_id_png(os.path.join(pred_dir, pred_ann["file_name"]), "pred")
        for seg in pred_ann["segments_info"]:
            mask = pred == seg["id"]
            counts["void"] += int(np.mean(gt[mask] == 0) > 0.5)
            crowd = [g["id"] for g in gt_ann["segments_info"]
                     if g["iscrowd"] and g["category_id"] == seg["category_id"]]
            counts["crowd"] += int(np.mean(np.isin(gt[mask], crowd)) > 0.5)
    return counts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_datasets_match_pq_compute(tmp_path, seed):
    files = random_dataset(str(tmp_path), seed)
    result = assert_same_as_pq_compute(*files)
    assert result["Things"]["n"] > 0 and result["Stuff"]["n"] > 0
    counts = ignorable_predictions(*files)  # the data exercise both "not a FP" rules
    assert counts["void"] > 0 and counts["crowd"] > 0, counts


def test_json_area_of_ground_truth_is_used_like_pq_compute(tmp_path):
    """pq_compute takes a GT segment's area from the JSON; so do we (a stale area changes IoU)."""
    gt_json, gt_dir, pred_json, pred_dir = random_dataset(str(tmp_path), seed=3)
    with open(gt_json) as f:
        data = json.load(f)
    for ann in data["annotations"]:
        for seg in ann["segments_info"]:
            seg["area"] += seg["id"] % 7
    with open(gt_json, "w") as f:
        json.dump(data, f)
    assert_same_as_pq_compute(gt_json, gt_dir, pred_json, pred_dir)


def test_parallel_workers_match_one_process(tmp_path):
    files = random_dataset(str(tmp_path), seed=4, num_images=9)
    single = evaluate_files(*files, workers=1, progress=False)
    parallel = evaluate_files(*files, workers=2, progress=False)
    for name in GROUP_NAMES:
        assert parallel[name] == pytest.approx(single[name], abs=1e-12)
    for category_id, row in single["per_class"].items():
        assert parallel["per_class"][category_id] == pytest.approx(row, abs=1e-12)


def test_real_coco_sample_matches_pq_compute(coco_sample_dir, tmp_path):
    gt_json = os.path.join(coco_sample_dir, "panoptic.json")
    gt_dir = os.path.join(coco_sample_dir, "panoptic")
    pred_json, pred_dir = str(tmp_path / "pred.json"), str(tmp_path / "pred")
    perturb_panoptic(gt_json, gt_dir, pred_json, pred_dir, seed=0)
    result = assert_same_as_pq_compute(gt_json, gt_dir, pred_json, pred_dir)
    assert 0 < result["All"]["pq"] < 1
    # The ground truth scored against itself is perfect.
    perfect = evaluate_files(gt_json, gt_dir, gt_json, gt_dir, workers=1, progress=False)
    assert perfect["All"]["pq"] == pytest.approx(1.0)


def test_synthetic_dataset_matches_pq_compute(synthetic_dir, tmp_path):
    gt_json = os.path.join(synthetic_dir, "val", "panoptic.json")
    gt_dir = os.path.join(synthetic_dir, "val", "panoptic")
    pred_json, pred_dir = str(tmp_path / "pred.json"), str(tmp_path / "pred")
    perturb_panoptic(gt_json, gt_dir, pred_json, pred_dir, seed=1)
    assert_same_as_pq_compute(gt_json, gt_dir, pred_json, pred_dir)


def test_perturbation_is_deterministic(tmp_path):
    gt_json, gt_dir, _, _ = random_dataset(str(tmp_path), seed=6, num_images=2)
    outputs = []
    for run in ("a", "b"):
        out_json = perturb_panoptic(gt_json, gt_dir, str(tmp_path / f"{run}.json"),
                                    str(tmp_path / run), seed=11)
        with open(out_json) as f:
            outputs.append(json.load(f)["annotations"])
        outputs.append([np.asarray(Image.open(tmp_path / run / a["file_name"])).tolist()
                        for a in outputs[-1]])
    assert outputs[0] == outputs[2] and outputs[1] == outputs[3]


# ---------------------------------------------------------------------------- errors

@pytest.fixture()
def small_files(tmp_path):
    return random_dataset(str(tmp_path), seed=8, num_images=2)


def _edit_json(path, edit):
    with open(path) as f:
        data = json.load(f)
    edit(data)
    with open(path, "w") as f:
        json.dump(data, f)


def _error(files) -> str:
    with pytest.raises(DatasetError) as info:
        evaluate_files(*files, workers=1, progress=False)
    return str(info.value)


def test_missing_prediction_png(small_files):
    os.remove(os.path.join(small_files[3], "000002.png"))
    assert "prediction PNG not found" in _error(small_files)
    assert os.path.join(small_files[3], "000002.png") in _error(small_files)


def test_prediction_of_other_size(small_files):
    path = os.path.join(small_files[3], "000001.png")
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(path)
    message = _error(small_files)
    assert path in message and "5x6" in message and "20x28" in message


def test_segment_in_png_not_in_json(small_files):
    _edit_json(small_files[2], lambda d: d["annotations"][0]["segments_info"].pop())
    message = _error(small_files)
    assert "image 1" in message and "not in segments_info" in message


def test_segment_in_json_not_in_png(small_files):
    _edit_json(small_files[2], lambda d: d["annotations"][1]["segments_info"].append(
        {"id": 5, "category_id": 1, "iscrowd": 0}))
    message = _error(small_files)
    assert "image 2" in message and "[5]" in message and "not in the id map" in message


def test_unknown_category(small_files):
    _edit_json(small_files[2], lambda d: d["annotations"][1]["segments_info"][0].update(
        category_id=999))
    message = _error(small_files)
    assert small_files[2] in message and "unknown category_id 999" in message


def test_missing_prediction_for_image(small_files):
    _edit_json(small_files[2], lambda d: d["annotations"].pop(0))
    message = _error(small_files)
    assert "no prediction for 1 ground-truth image" in message and "[1]" in message


def test_missing_and_malformed_json(small_files, tmp_path):
    gt_json, gt_dir, pred_json, pred_dir = small_files
    with pytest.raises(DatasetError, match="not found"):
        evaluate_files(gt_json, gt_dir, str(tmp_path / "absent.json"), pred_dir, workers=1)
    with open(pred_json, "w") as f:
        f.write("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        evaluate_files(gt_json, gt_dir, pred_json, pred_dir, workers=1)


def test_png_that_is_not_rgb(small_files):
    path = os.path.join(small_files[3], "000001.png")
    Image.fromarray(np.zeros((20, 28), np.uint8)).save(path)
    assert "mode L" in _error(small_files)


def test_error_raised_in_a_worker_process(small_files):
    os.remove(os.path.join(small_files[1], "000001.png"))
    with pytest.raises(DatasetError, match="ground-truth PNG not found"):
        evaluate_files(*small_files, workers=2, progress=False)


# ---------------------------------------------------------------------------- CLI

def test_cli_prints_table_and_writes_json(small_files, tmp_path, capsys):
    gt_json, gt_dir, pred_json, pred_dir = small_files
    out = tmp_path / "metrics" / "pq.json"
    code = main(["pq", "--gt-json", gt_json, "--gt-dir", gt_dir, "--pred-json", pred_json,
                 "--pred-dir", pred_dir, "--out", str(out), "--workers", "1", "--per-class"])
    assert code == 0
    expected = evaluate_files(*small_files, workers=1, progress=False)
    printed = capsys.readouterr().out
    assert format_pq_table(expected) in printed
    rows = {int(line.split()[0]): line.split() for line in printed.splitlines()
            if line[:5].strip().isdigit()}
    occurring = {cid: r for cid, r in expected["per_class"].items() if r["tp"] + r["fp"] + r["fn"]}
    assert set(rows) == set(occurring)
    for category_id, row in occurring.items():
        assert [int(v) for v in rows[category_id][-3:]] == [row["tp"], row["fp"], row["fn"]]
    with open(out) as f:
        written = json.load(f)
    assert written["All"] == pytest.approx(expected["All"])
    assert {int(k): v for k, v in written["per_class"].items()} == expected["per_class"]


def test_cli_reports_errors_in_one_line(small_files, capsys):
    gt_json, gt_dir, pred_json, _ = small_files
    code = main(["pq", "--gt-json", gt_json, "--gt-dir", gt_dir, "--pred-json", pred_json,
                 "--pred-dir", "/nonexistent/folder", "--workers", "1"])
    assert code == 2
    assert "error: prediction PNG not found: /nonexistent/folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------- Keras metric

def metric_batch(rng, num_images, height, width, num_gt_slots, num_pred_slots,
                 categories=CATEGORIES):
    """Random images as padded metric inputs, plus the same images for the accumulator."""
    cmap = CategoryMap.from_categories(categories)
    arrays = {k: [] for k in ("gt_ids", "gt_segment_ids", "gt_segment_classes",
                              "gt_segment_iscrowd", "pred_ids", "pred_segment_ids",
                              "pred_segment_classes")}
    images = []
    for _ in range(num_images):
        gt_ids, gt_info = random_gt_image(rng, height, width)
        pred_ids, pred_info = random_prediction(rng, gt_ids, gt_info)
        for seg in gt_info:
            del seg["area"]  # the metric measures GT areas on the id map
        images.append((gt_ids, gt_info, pred_ids, pred_info))
        for prefix, ids, info, slots in (("gt", gt_ids, gt_info, num_gt_slots),
                                         ("pred", pred_ids, pred_info, num_pred_slots)):
            # GT keeps its order (the last crowd segment of a class counts); predictions not.
            order = np.arange(len(info)) if prefix == "gt" else rng.permutation(len(info))
            assert len(info) <= slots
            pad = slots - len(info)
            arrays[f"{prefix}_ids"].append(ids.astype(np.int32))
            arrays[f"{prefix}_segment_ids"].append(
                [info[i]["id"] for i in order] + rng.integers(1, 99, pad).tolist())
            arrays[f"{prefix}_segment_classes"].append(
                [cmap.semantic_index(info[i]["category_id"]) for i in order] + [-1] * pad)
            if prefix == "gt":
                arrays["gt_segment_iscrowd"].append(
                    [bool(info[i]["iscrowd"]) for i in order] + [False] * pad)
    batch = {k: np.asarray(v, np.bool_ if k.endswith("iscrowd") else np.int32)
             for k, v in arrays.items()}
    return batch, images, cmap


def _metric(cmap, **kwargs):
    from oanet_tf.evaluation.pq_metric import PanopticQualityMetric

    return PanopticQualityMetric(cmap.num_semantic, list(range(cmap.num_things)), **kwargs)


def _assert_metric_matches(metric, accumulator, cmap):
    expected = accumulator.result()
    result = {k: float(v) for k, v in metric.result().items()}
    for name, suffix in (("All", ""), ("Things", "_things"), ("Stuff", "_stuff")):
        for key in ("pq", "sq", "rq"):
            assert result[key + suffix] == pytest.approx(expected[name][key],
                                                         abs=METRIC_TOLERANCE), key + suffix
    order = [accumulator.category_ids.index(cid) for cid in cmap.semantic_ids]
    for variable, row in zip((metric.iou_sum, metric.tp, metric.fp, metric.fn), accumulator.stats):
        np.testing.assert_allclose(np.asarray(variable), row[order], atol=METRIC_TOLERANCE)


def test_metric_matches_accumulator_on_random_batches():
    rng = np.random.default_rng(21)
    metric = None
    accumulator = PQAccumulator(CATEGORIES)
    for _ in range(3):
        batch, images, cmap = metric_batch(rng, 4, 20, 28, 12, 24)
        metric = metric or _metric(cmap)
        metric.update_state(**batch)
        for image in images:
            accumulator.update(*image)
    assert accumulator.stats[1].sum() > 0 and accumulator.stats[2].sum() > 0
    _assert_metric_matches(metric, accumulator, cmap)
    metric.reset_state()
    assert all(float(v) == 0.0 for v in metric.result().values())


def test_metric_hand_case_and_crowd_order():
    """The hand-computed image, then a second crowd segment of the person class listed after
    B: pq_compute consults only the last one, so prediction b becomes a false positive."""
    gt, gt_segments, pred, pred_segments = hand_case()
    cmap = CategoryMap.from_categories(HAND_CATEGORIES)
    gt_two_crowds = gt.copy()
    gt_two_crowds[0, 10:12] = 15  # a second person crowd segment on former void
    two_crowds = gt_segments + [{"id": 15, "category_id": 1, "iscrowd": 1}]
    for gt_map, segments, b_is_fp in ((gt, gt_segments, False),
                                      (gt_two_crowds, two_crowds, True)):
        accumulator = PQAccumulator(HAND_CATEGORIES)
        accumulator.update(gt_map, segments, pred, pred_segments)
        assert accumulator.result()["per_class"][1]["fp"] == int(b_is_fp)
        metric = _metric(cmap, dtype="float64")
        metric.update_state(
            gt_map[None].astype(np.int32), np.array([[s["id"] for s in segments]], np.int32),
            np.array([[cmap.semantic_index(s["category_id"]) for s in segments]], np.int32),
            np.array([[s["iscrowd"] == 1 for s in segments]]),
            pred[None].astype(np.int32), np.array([[s["id"] for s in pred_segments]], np.int32),
            np.array([[cmap.semantic_index(s["category_id"]) for s in pred_segments]],
                     np.int32))
        _assert_metric_matches(metric, accumulator, cmap)


def test_metric_ignores_padding_and_unlisted_ids():
    """Padding slots, segments with no pixel and pixels of unlisted ids (treated as void)."""
    rng = np.random.default_rng(3)
    batch, _, cmap = metric_batch(rng, 2, 20, 28, 12, 24)
    reference = _metric(cmap)
    reference.update_state(**batch)
    noisy = dict(batch)
    noisy["pred_ids"] = np.where(batch["pred_ids"] == 0, 4242, batch["pred_ids"])
    noisy["gt_segment_classes"] = batch["gt_segment_classes"].copy()
    noisy["gt_segment_classes"][:, -1] = 0  # a listed segment whose id has no pixel
    unlisted = _metric(cmap)
    unlisted.update_state(**noisy)
    for key, value in reference.result().items():
        assert float(unlisted.result()[key]) == pytest.approx(float(value), abs=1e-7), key


def test_metric_config_round_trip_and_validation():
    from oanet_tf.evaluation.pq_metric import PanopticQualityMetric

    metric = PanopticQualityMetric(6, [2, 0, 1], name="pq_val", dtype="float64")
    config = metric.get_config()
    assert config == {"name": "pq_val", "dtype": "float64", "num_classes": 6,
                      "thing_classes": [0, 1, 2]}
    clone = PanopticQualityMetric.from_config(config)
    assert clone.get_config() == config
    rng = np.random.default_rng(9)
    batch, _, _ = metric_batch(rng, 2, 16, 20, 12, 24)
    metric.update_state(**batch)
    clone.update_state(**batch)
    assert {k: float(v) for k, v in clone.result().items()} == \
        {k: float(v) for k, v in metric.result().items()}
    with pytest.raises(ValueError, match="thing_classes"):
        PanopticQualityMetric(3, [3])
    with pytest.raises(ValueError, match="num_classes"):
        PanopticQualityMetric(0, [])


def test_metric_inside_model_evaluate_with_a_strategy():
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(17)
    batches = [metric_batch(rng, 2, 16, 24, 12, 24) for _ in range(3)]
    cmap = batches[0][2]
    accumulator = PQAccumulator(CATEGORIES)
    for _, images, _ in batches:
        for image in images:
            accumulator.update(*image)
    dataset = tf.data.Dataset.from_tensor_slices(
        {k: np.concatenate([b[0][k] for b in batches]) for k in batches[0][0]}).batch(2)

    class Scorer(keras.Model):
        def __init__(self):
            super().__init__()
            self.pq = _metric(cmap)

        def call(self, inputs):
            return inputs

        @property
        def metrics(self):
            return [self.pq]

        def test_step(self, data):
            self.pq.update_state(**data)
            return self.get_metrics_result()

    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = Scorer()
        model.compile()
    logs = model.evaluate(dataset, return_dict=True, verbose=0)
    expected = accumulator.result()
    for name, suffix in (("All", ""), ("Things", "_things"), ("Stuff", "_stuff")):
        for key in ("pq", "sq", "rq"):
            assert logs[key + suffix] == pytest.approx(expected[name][key], abs=METRIC_TOLERANCE)


def test_accumulator_rejects_bad_id_maps():
    gt, gt_segments, pred, pred_segments = hand_case()
    accumulator = PQAccumulator(HAND_CATEGORIES)
    for bad_id in (-3, 256 ** 3):
        broken = pred.copy()
        broken[0, 0] = bad_id
        with pytest.raises(DatasetError, match=rf"photo 9: predicted segment id\(s\) \[{bad_id}\]"):
            accumulator.update(gt, gt_segments, broken, pred_segments, where="photo 9")
    with pytest.raises(DatasetError, match="ground-truth segment id 11 is listed twice"):
        accumulator.update(gt, gt_segments + gt_segments[:1], pred, pred_segments)
    with pytest.raises(DatasetError, match="expected two"):
        accumulator.update(gt, gt_segments, pred[:, :5], pred_segments)
    with pytest.raises(DatasetError, match="needs an integer 'id'"):
        accumulator.update(gt, gt_segments, pred, pred_segments + [{"id": 2.5, "category_id": 1}])
    with pytest.raises(ValueError, match="must hold integers"):
        accumulator.update(gt.astype(float), gt_segments, pred, pred_segments)
    assert not accumulator.stats.any()  # nothing was added by the failed updates


def test_metric_statistics_compile_with_xla():
    import tensorflow as tf

    from oanet_tf.evaluation.pq_metric import panoptic_statistics

    batch, _, cmap = metric_batch(np.random.default_rng(2), 2, 16, 20, 12, 24)
    eager = panoptic_statistics(**batch, num_classes=cmap.num_semantic)
    compiled = tf.function(lambda inputs: panoptic_statistics(
        **inputs, num_classes=cmap.num_semantic), jit_compile=True)(batch)
    for expected, value in zip(eager, compiled):
        np.testing.assert_allclose(value.numpy(), expected.numpy(), atol=1e-6)


def test_file_evaluator_does_not_load_tensorflow():
    code = ("import sys, oanet_tf.evaluation, oanet_tf.evaluation.perturb, oanet_tf.cli.pq; "
            "sys.exit('tensorflow' in sys.modules)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=root).returncode == 0
