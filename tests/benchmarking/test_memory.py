"""benchmark_memory's cases: the COCO-sized batches, and one measured process of ours."""

import sys

from oanet_tf.benchmarking import memory
from oanet_tf.benchmarking.inputs import R50_CONFIG


def test_coco_batches_are_the_coco_suite_train_cases():
    # 480x640 -> 800x1067 in 800x1088 under coco_r50 (tests/benchmarking/test_coco.py).
    assert memory.coco_batches(R50_CONFIG) == [
        {"batch": 2, "resized": [800, 1067], "padded": [800, 1088], "original": [480, 640]},
        {"batch": 2, "resized": [1067, 800], "padded": [1088, 800], "original": [640, 480]}]


def test_a_measured_process_reports_its_peak(tiny_files):
    batches = memory.batches_of_size((64, 64), 1) + [
        {"batch": 1, "resized": [40, 56], "padded": [64, 64], "original": [30, 42]}]
    case = {"config": tiny_files[0], "categories": tiny_files[1], "instances": 2,
            "batches": batches}
    seen = memory.measure(sys.executable, "ours", case)
    assert seen["model"] == "ours" and seen["batches"] == batches
    assert seen["peak_rss_mib"] >= seen["rss_after_build_mib"] > 0
