"""The memory suite's cases: the COCO-sized batches, and one measured process of ours."""

import re
import sys

import pytest

from harness import memory
from harness.inputs import R50_CONFIG


def test_coco_batches_are_the_coco_suite_train_cases():
    # 480x640 -> 800x1067 in 800x1088 under coco_r50 (tests/benchmarks/test_coco.py).
    assert memory.coco_batches(R50_CONFIG) == [
        {"batch": 2, "resized": [800, 1067], "padded": [800, 1088], "original": [480, 640]},
        {"batch": 2, "resized": [1067, 800], "padded": [1088, 800], "original": [640, 480]}]


def _case(tiny_files, batches) -> dict:
    return {"config": tiny_files[0], "categories": tiny_files[1], "instances": 2,
            "batches": batches}


def test_one_prepared_step_per_batch(tiny_files):
    """Prepared only (test_memory_row_measures_ours_in_a_fresh_process runs them)."""
    batches = memory.batches_of_size((64, 64), 1) + [
        {"batch": 1, "resized": [40, 56], "padded": [64, 64], "original": [30, 42]}]
    calls = memory.prepared_steps("ours", _case(tiny_files, batches))
    assert len(calls) == len(batches) and all(callable(c) for c in calls)


def test_a_failed_process_reports_its_error(tiny_files, tmp_path):
    case = _case((str(tmp_path / "missing.yaml"), tiny_files[1]),
                 memory.batches_of_size((64, 64), 1))
    with pytest.raises(RuntimeError, match="ours on .* failed:(.|\n)*missing.yaml"):
        memory.measure(sys.executable, "ours", case)


def test_memory_row_measures_ours_in_a_fresh_process(tiny_files):
    """Two batches in one process: the row holds its peak (not below its resident set after
    building), the first batch's size and batch, every batch in the note; no peer columns
    without a torch python."""
    batches = memory.batches_of_size((64, 96), 2) + memory.batches_of_size((96, 64), 2)
    row = memory.memory_row("train step", *tiny_files, 3, batches)
    assert (row["suite"], row["case"], row["unit"]) == ("memory", "train step peak RSS", "MiB")
    assert row["size"] == [64, 96] and row["batch"] == 2
    assert row["note"].startswith("2x64x96, 2x96x64 (batch x padded size), 2 steps each")
    built = float(re.search(r"after build: ours (\d+) MiB", row["note"]).group(1))
    assert row["ours"] >= built - 1 > 0
    assert row["peer"] is None and row["speedup"] is None and row["peer_name"] == ""


def test_serving_row_measures_ours_serving_the_jpegs(tiny_files, coco_sample_dir):
    """The tiny model serving one real COCO JPEG (bytes in) in a fresh process."""
    from harness.coco import sample_images

    files = sample_images(coco_sample_dir)[:1]
    row = memory.serving_row(*tiny_files, files, "float32")
    assert (row["case"], row["batch"], row["size"]) == ("serving float32 peak RSS", 1, None)
    assert row["note"].startswith(files[0].rsplit("/", 1)[-1] + "; 2 calls")
    built = float(re.search(r"after build: ours (\d+) MiB", row["note"]).group(1))
    assert row["ours"] >= built - 1 > 0 and row["peer"] is None
