"""Our PQ from files (`evaluate_files`: its default engine, and its numpy engine) against
hotcoco's and panopticapi's pq_compute on the same data and cores: a synthetic COCO panoptic
set and a perturbed prediction copy of it, every evaluator on it (best of `repeats` each,
alternating, after one untimed read of every PNG), and how far each differs from pq_compute.
No TensorFlow."""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import platform

from harness.timing import timed
from oanet_tf.data.synthetic import make_synthetic_dataset
from oanet_tf.evaluation import hotcoco_engine
from oanet_tf.evaluation.perturb import perturb_panoptic
from oanet_tf.evaluation.pq import AUTO, GROUPS, NUMPY, evaluate_files, format_pq_table

IMAGES = 500  # synthetic images evaluated
SIZE = (128, 128)  # their height and width
# The sets the evaluator suite times: (images, (height, width)), small and COCO-sized.
SETS = ((IMAGES, SIZE), (200, (480, 640)))
REFERENCE = "panopticapi pq_compute"


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


def evaluators(workers: int) -> dict:
    """{name: function(gt_json, gt_dir, pred_json, pred_dir) -> result dict} of every
    evaluator on this machine (hotcoco's only where it is installed)."""
    functions = {
        "oanet_tf evaluate_files": lambda *files: evaluate_files(
            *files, workers=workers, progress=False, engine=AUTO),
        "oanet_tf numpy engine": lambda *files: evaluate_files(
            *files, workers=workers, progress=False, engine=NUMPY),
        REFERENCE: run_pq_compute,
    }
    if hotcoco_engine.available():
        functions["hotcoco pq_compute"] = hotcoco_engine.evaluate
    return functions


def compare_with_pq_compute(out_dir: str, num_images: int, size: tuple, seed: int,
                            workers: int, repeats: int) -> dict:
    """Generate the data in out_dir, time every evaluator, print and return the report."""
    gt_json = os.path.join(out_dir, "val", "panoptic.json")
    gt_dir = os.path.join(out_dir, "val", "panoptic")
    pred_json, pred_dir = os.path.join(out_dir, "pred.json"), os.path.join(out_dir, "pred")
    print(f"generating {num_images} synthetic images of {size[0]}x{size[1]} in {out_dir}")
    make_synthetic_dataset(out_dir, num_train=0, num_val=num_images, seed=seed, size=size)
    perturb_panoptic(gt_json, gt_dir, pred_json, pred_dir, seed=seed)
    read_all(gt_dir)
    read_all(pred_dir)

    functions = evaluators(workers)
    times = {name: [] for name in functions}
    results = {}
    for _ in range(repeats):
        for name, function in functions.items():
            seconds, results[name] = timed(function, gt_json, gt_dir, pred_json, pred_dir)
            times[name].append(seconds)
    ours = results["oanet_tf evaluate_files"]
    print(format_pq_table(ours))
    report = {
        "num_images": num_images, "image_size": list(size), "seed": seed,
        "cpu_count": os.cpu_count(), "ours_workers": workers,
        "pq_compute_workers": multiprocessing.cpu_count(), "repeats": repeats,
        "python": platform.python_version(), "engine": ours["engine"],
        "seconds": {name: min(values) for name, values in times.items()},
        "all_seconds": times,
        "max_abs_difference": {name: max_difference(result, results[REFERENCE])
                               for name, result in results.items() if name != REFERENCE},
        "pq": {name: ours[name] for name, _ in GROUPS},
    }
    print(f"engine of evaluate_files: {ours['engine']}")
    for name, seconds in report["seconds"].items():
        difference = report["max_abs_difference"].get(name)
        print(f"{name:<26} {seconds:8.3f} s"
              + (f"   max |difference| to {REFERENCE}: {difference:.3g}"
                 if difference is not None else ""))
    return report
