"""The breakdown suite: its rows from hand-made timings, and its parts on the tiny model
(what is timed and the differences; not the timing itself)."""

import math

import pytest

from harness import breakdown
from harness.model_bench import OursBench

SIZE = (64, 96)


def test_rows_put_the_peer_beside_backbone_fpn_only():
    inference = {"backbone_fpn": 2.0, "dense": 3.0, breakdown.PEER_BACKBONE_FPN: 3.0,
                 breakdown.REST_OF_DETECT: 0.5}
    train = {"train_step": 4.0, breakdown.REST_OF_STEP: 1.0}
    rows = breakdown.breakdown_rows(SIZE, inference, train)
    assert [r["case"] for r in rows] == ["infer backbone_fpn", "infer dense",
                                         "infer rest of detect", "train train_step",
                                         "train rest of step"]
    assert [r["ours"] for r in rows] == [2.0, 3.0, 0.5, 4.0, 1.0]
    assert rows[0]["peer"] == 3.0 and rows[0]["peer_name"] == "torchvision"
    assert rows[0]["speedup"] == pytest.approx(1.5)
    assert all(r["peer"] is None and r["speedup"] is None for r in rows[1:])
    assert all((r["suite"], r["size"], r["batch"], r["unit"]) == ("breakdown", list(SIZE), 1, "s")
               for r in rows)
    assert rows[2]["note"] == breakdown.NOTES[breakdown.REST_OF_DETECT]
    assert breakdown.breakdown_rows(SIZE, {"backbone_fpn": 2.0}, {})[0]["peer"] is None


def test_every_part_on_the_tiny_model(tiny_files):
    """Every inference part runs and the differences add up; the train step's pieces are
    only built: a batch-1 backward pass crashes TensorFlow's oneDNN Conv2DBackpropFilter on
    some CPUs (this one; not with TF_ENABLE_ONEDNN_OPTS=0), which is no part of the suite."""
    bench = OursBench(*tiny_files, size=SIZE)
    inference = breakdown.inference_breakdown(bench, None, 0, 0, 1)
    parts = set(breakdown.DETECT_PARTS) | {"backbone_fpn", "detect", "full", "merge"}
    assert set(inference) == parts | {breakdown.REST_OF_DETECT, breakdown.DENSE_HEADS}
    assert inference[breakdown.REST_OF_DETECT] == pytest.approx(
        inference["detect"] - sum(inference[p] for p in breakdown.DETECT_PARTS))
    assert inference[breakdown.DENSE_HEADS] == pytest.approx(
        inference["dense"] - inference["backbone_fpn"])
    assert all(s > 0 and math.isfinite(s) for name, s in inference.items()
               if name not in (breakdown.REST_OF_DETECT, breakdown.DENSE_HEADS))
    pieces = {"dense_fwd_bwd", "roi_align_box_fwd_bwd", "box_head_fwd_bwd",
              "roi_align_mask_fwd_bwd", "mask_head_fwd_bwd", "mask_targets",
              "srm_inputs_srm_loss_fwd_bwd"}
    calls = breakdown.train_part_calls(bench, 0, 2)
    assert set(calls) == pieces | {"train_step"} and all(map(callable, calls.values()))
