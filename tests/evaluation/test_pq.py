"""Panoptic Quality (oanet_tf.evaluation.pq): a hand-computed case, agreement with panopticapi's
pq_compute on every number (random, real COCO and synthetic data), error reporting and the CLI."""

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
from oanet_tf.errors import DatasetError
from oanet_tf.evaluation.perturb import perturb_panoptic
from oanet_tf.evaluation import hotcoco_engine
from oanet_tf.evaluation.pq import (AUTO, HOTCOCO, NUMPY, PQAccumulator, evaluate_files,
                                    format_pq_table, read_id_png, resolve_engine)
from tests.evaluation.panoptic_cases import (CATEGORIES, edit_json, HAND_CATEGORIES, hand_case,
                                             random_dataset, random_gt_image, random_prediction,
                                             segments_of, write_dataset)


TOLERANCE = 1e-9
GROUP_NAMES = ("All", "Things", "Stuff")
# Both engines of evaluate_files meet the same checks (hotcoco where installed).
ENGINES = [NUMPY, pytest.param(HOTCOCO, marks=pytest.mark.skipif(
    not hotcoco_engine.available(), reason="hotcoco is not installed"))]


@pytest.fixture(params=ENGINES)
def engine(request):
    return request.param


def assert_same_as_pq_compute(gt_json, gt_dir, pred_json, pred_dir, engine, workers=1):
    ours = evaluate_files(gt_json, gt_dir, pred_json, pred_dir, workers=workers, progress=False,
                          engine=engine)
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


def test_hand_case_matches_pq_compute(tmp_path, engine):
    gt, gt_segments, pred, pred_segments = hand_case()
    gt_info = segments_of(gt, {s["id"]: s["category_id"] for s in gt_segments},
                          {s["id"]: s["iscrowd"] for s in gt_segments})
    pred_info = segments_of(pred, {s["id"]: s["category_id"] for s in pred_segments})
    gt_files = write_dataset(str(tmp_path), "gt", [(7, gt, gt_info)], HAND_CATEGORIES)
    pred_files = write_dataset(str(tmp_path), "pred", [(7, pred, pred_info)], HAND_CATEGORIES)
    assert_same_as_pq_compute(*gt_files, *pred_files, engine)


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
def test_random_datasets_match_pq_compute(tmp_path, seed, engine):
    files = random_dataset(str(tmp_path), seed)
    result = assert_same_as_pq_compute(*files, engine)
    assert result["Things"]["n"] > 0 and result["Stuff"]["n"] > 0
    counts = ignorable_predictions(*files)  # the data exercise both "not a FP" rules
    assert counts["void"] > 0 and counts["crowd"] > 0, counts


def test_json_area_of_ground_truth_is_used_like_pq_compute(tmp_path, engine):
    """pq_compute takes a GT segment's area from the JSON; so do we (a stale area changes IoU)."""
    gt_json, gt_dir, pred_json, pred_dir = random_dataset(str(tmp_path), seed=3)
    with open(gt_json) as f:
        data = json.load(f)
    for ann in data["annotations"]:
        for seg in ann["segments_info"]:
            seg["area"] += seg["id"] % 7
    with open(gt_json, "w") as f:
        json.dump(data, f)
    assert_same_as_pq_compute(gt_json, gt_dir, pred_json, pred_dir, engine)


def test_parallel_workers_match_one_process(tmp_path):
    files = random_dataset(str(tmp_path), seed=4, num_images=9)
    single = evaluate_files(*files, workers=1, progress=False, engine=NUMPY)
    parallel = evaluate_files(*files, workers=2, progress=False, engine=NUMPY)
    for name in GROUP_NAMES:
        assert parallel[name] == pytest.approx(single[name], abs=1e-12)
    for category_id, row in single["per_class"].items():
        assert parallel["per_class"][category_id] == pytest.approx(row, abs=1e-12)


def test_real_coco_sample_matches_pq_compute(coco_sample_dir, tmp_path, engine):
    gt_json = os.path.join(coco_sample_dir, "panoptic.json")
    gt_dir = os.path.join(coco_sample_dir, "panoptic")
    pred_json, pred_dir = str(tmp_path / "pred.json"), str(tmp_path / "pred")
    perturb_panoptic(gt_json, gt_dir, pred_json, pred_dir, seed=0)
    result = assert_same_as_pq_compute(gt_json, gt_dir, pred_json, pred_dir, engine)
    assert 0 < result["All"]["pq"] < 1
    # The ground truth scored against itself is perfect.
    perfect = evaluate_files(gt_json, gt_dir, gt_json, gt_dir, workers=1, progress=False,
                             engine=engine)
    assert perfect["All"]["pq"] == pytest.approx(1.0)


def test_synthetic_dataset_matches_pq_compute(synthetic_dir, tmp_path, engine):
    gt_json = os.path.join(synthetic_dir, "val", "panoptic.json")
    gt_dir = os.path.join(synthetic_dir, "val", "panoptic")
    pred_json, pred_dir = str(tmp_path / "pred.json"), str(tmp_path / "pred")
    perturb_panoptic(gt_json, gt_dir, pred_json, pred_dir, seed=1)
    assert_same_as_pq_compute(gt_json, gt_dir, pred_json, pred_dir, engine)


@pytest.fixture()
def small_files(tmp_path):
    return random_dataset(str(tmp_path), seed=8, num_images=2)


@pytest.fixture(params=ENGINES)
def bad_files_error(small_files, request):
    """The error evaluate_files raises, with the given engine, on small_files as a test broke
    them: the same message from either engine."""
    def error() -> str:
        with pytest.raises(DatasetError) as info:
            evaluate_files(*small_files, workers=1, progress=False, engine=request.param)
        return str(info.value)

    return error


def test_missing_prediction_png(small_files, bad_files_error):
    os.remove(os.path.join(small_files[3], "000002.png"))
    assert "prediction PNG not found" in bad_files_error()
    assert os.path.join(small_files[3], "000002.png") in bad_files_error()


def test_prediction_of_other_size(small_files, bad_files_error):
    path = os.path.join(small_files[3], "000001.png")
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(path)
    message = bad_files_error()
    assert path in message and "5x6" in message and "20x28" in message


def test_segment_in_png_not_in_json(small_files, bad_files_error):
    edit_json(small_files[2], lambda d: d["annotations"][0]["segments_info"].pop())
    message = bad_files_error()
    assert "image 1" in message and "not in segments_info" in message


def test_segment_in_json_not_in_png(small_files, bad_files_error):
    edit_json(small_files[2], lambda d: d["annotations"][1]["segments_info"].append(
        {"id": 5, "category_id": 1, "iscrowd": 0}))
    message = bad_files_error()
    assert "image 2" in message and "[5]" in message and "not in the id map" in message


def test_unknown_category(small_files, bad_files_error):
    edit_json(small_files[2], lambda d: d["annotations"][1]["segments_info"][0].update(
        category_id=999))
    message = bad_files_error()
    assert small_files[2] in message and "unknown category_id 999" in message


def test_missing_prediction_for_image(small_files, bad_files_error):
    edit_json(small_files[2], lambda d: d["annotations"].pop(0))
    message = bad_files_error()
    assert "no prediction for 1 ground-truth image" in message and "[1]" in message


def test_missing_and_malformed_json(small_files, tmp_path):
    gt_json, gt_dir, pred_json, pred_dir = small_files
    with pytest.raises(DatasetError, match="not found"):
        evaluate_files(gt_json, gt_dir, str(tmp_path / "absent.json"), pred_dir, workers=1)
    with open(pred_json, "w") as f:
        f.write("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        evaluate_files(gt_json, gt_dir, pred_json, pred_dir, workers=1)


def test_png_that_is_not_rgb(small_files, bad_files_error):
    path = os.path.join(small_files[3], "000001.png")
    Image.fromarray(np.zeros((20, 28), np.uint8)).save(path)
    assert "mode L" in bad_files_error()


def test_error_raised_in_a_worker_process(small_files):
    os.remove(os.path.join(small_files[1], "000001.png"))
    with pytest.raises(DatasetError, match="ground-truth PNG not found"):
        evaluate_files(*small_files, workers=2, progress=False, engine=NUMPY)


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


def test_engine_choice(monkeypatch):
    assert resolve_engine(NUMPY) == NUMPY
    with pytest.raises(ValueError, match="one of auto, hotcoco, numpy"):
        resolve_engine("fast")
    monkeypatch.setattr(hotcoco_engine, "available", lambda: False)
    assert resolve_engine(AUTO) == NUMPY
    with pytest.raises(DatasetError, match="hotcoco is not installed"):
        resolve_engine(HOTCOCO)
    monkeypatch.setattr(hotcoco_engine, "available", lambda: True)
    assert resolve_engine(AUTO) == HOTCOCO


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


def test_file_evaluator_does_not_load_tensorflow():
    code = ("import sys, oanet_tf.evaluation, oanet_tf.evaluation.perturb, oanet_tf.cli.pq; "
            "sys.exit('tensorflow' in sys.modules)")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=root).returncode == 0
