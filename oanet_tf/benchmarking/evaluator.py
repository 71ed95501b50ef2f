"""Our PQ evaluator against panopticapi's pq_compute on the same data and cores: a synthetic
COCO panoptic set and a perturbed prediction copy of it, both evaluators on it (best of
`repeats` each, alternating, after one untimed read of every PNG), and how far they differ.
numpy only (no TensorFlow)."""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import platform

from oanet_tf.benchmarking.timing import timed
from oanet_tf.data.synthetic import make_synthetic_dataset
from oanet_tf.evaluation.perturb import perturb_panoptic
from oanet_tf.evaluation.pq import GROUPS, evaluate_files, format_pq_table

IMAGES = 500  # synthetic images evaluated
SIZE = (128, 128)  # their height and width


def max_difference(ours: dict, reference: dict) -> float:
    """Largest absolute difference over All / Things / Stuff and per-class pq, sq, rq, n."""
    pairs = [(ours[name][key], reference[name][key])
             for name, _ in GROUPS for key in ("pq", "sq", "rq", "n")]
    pairs += [(ours["per_class"][cid][key], row[key])
              for cid, row in reference["per_class"].items() for key in ("pq", "sq", "rq")]
    return max(abs(a - b) for a, b in pairs)


def run_pq_compute(gt_json, gt_dir, pred_json, pred_dir):
    from panopticapi.evaluation import pq_compute

    with contextlib.redirect_stdout(io.StringIO()):  # it prints per-core progress
        return pq_compute(gt_json, pred_json, gt_dir, pred_dir)


def read_all(folder: str):
    """Read every file once so neither evaluator pays for a cold file cache."""
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), "rb") as f:
            f.read()


def compare_with_pq_compute(out_dir: str, num_images: int, size: tuple, seed: int,
                            workers: int, repeats: int) -> dict:
    """Generate the data in out_dir, time both evaluators, print and return the report."""
    gt_json = os.path.join(out_dir, "val", "panoptic.json")
    gt_dir = os.path.join(out_dir, "val", "panoptic")
    pred_json, pred_dir = os.path.join(out_dir, "pred.json"), os.path.join(out_dir, "pred")
    print(f"generating {num_images} synthetic images of {size[0]}x{size[1]} in {out_dir}")
    make_synthetic_dataset(out_dir, num_train=0, num_val=num_images, seed=seed, size=size)
    perturb_panoptic(gt_json, gt_dir, pred_json, pred_dir, seed=seed)
    read_all(gt_dir)
    read_all(pred_dir)

    ours_times, reference_times = [], []
    for _ in range(repeats):
        seconds, reference = timed(run_pq_compute, gt_json, gt_dir, pred_json, pred_dir)
        reference_times.append(seconds)
        seconds, ours = timed(evaluate_files, gt_json, gt_dir, pred_json, pred_dir,
                              workers=workers, progress=False)
        ours_times.append(seconds)
    print(format_pq_table(ours))
    report = {
        "num_images": num_images, "image_size": list(size), "seed": seed,
        "cpu_count": os.cpu_count(), "ours_workers": workers,
        "pq_compute_workers": multiprocessing.cpu_count(), "repeats": repeats,
        "python": platform.python_version(),
        "ours_seconds": min(ours_times), "pq_compute_seconds": min(reference_times),
        "ours_all_seconds": ours_times, "pq_compute_all_seconds": reference_times,
        "speedup": min(reference_times) / min(ours_times),
        "max_abs_difference": max_difference(ours, reference),
        "pq": {name: ours[name] for name, _ in GROUPS},
    }
    print(f"oanet_tf evaluate_files: {report['ours_seconds']:.3f} s ({workers} workers)")
    print(f"panopticapi pq_compute:  {report['pq_compute_seconds']:.3f} s "
          f"({report['pq_compute_workers']} workers)")
    print(f"speed-up: {report['speedup']:.2f}x; largest difference between the two: "
          f"{report['max_abs_difference']:.3g}")
    return report
