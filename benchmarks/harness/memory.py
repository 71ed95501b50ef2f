"""Peak resident memory of training steps and of serving, each model in a fresh process
(benchmark.py's memory suite): our R50 or torchvision's Mask R-CNN R50-FPN, training on
random batches of one size, or on the coco suite's COCO-sized batches (landscape, then
portrait); serving the coco suite's real JPEGs (JPEG bytes in, as the coco suite times it).

A measured process builds its model, prepares every batch, then runs STEPS calls of each and
reports its peak resident set (ru_maxrss) and its resident set before the first call. It is
`python -m harness.memory` with a JSON case on the command line; the torch one runs in
the benchmark venv (no TensorFlow: the COCO sizes are computed here and passed on)."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

from harness.report import row
from harness.torch_peer import peer_env

STEPS = 2
KIB_PER_MIB = 1024  # ru_maxrss is in KiB on Linux
BYTES_PER_MIB = 2**20
COCO_THINGS = 80  # torchvision's Mask R-CNN classes, less the background
SEED = 0
MODELS = ("ours", "torch")
SUITE = "memory"


def batches_of_size(size, batch: int) -> list:
    """One random batch of `batch` images of `size` (height, width), unpadded."""
    return [{"batch": batch, "resized": list(size), "padded": list(size),
             "original": list(size)}]


def coco_batches(config_path: str) -> list:
    """The coco suite's train batches: each orientation's files resized and padded as the
    config says."""
    from harness.coco import TRAIN_BATCH, train_cases
    from oanet_tf.config import load_config

    return [{"batch": TRAIN_BATCH, "resized": list(case.resized),
             "padded": list(case.padded), "original": list(case.original)}
            for case in train_cases(load_config(config_path).data)]


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / BYTES_PER_MIB


def prepared_serving(model: str, case: dict) -> list:
    """One zero-argument serving call of case["files"] (JPEG paths, one batch) in
    case["precision"] (model: ours or torch, bfloat16 as autocast)."""
    if model == "ours":
        from harness.model_bench import OursBench

        bench = OursBench(case["config"], case["categories"], precision=case["precision"])
        encoded = []
        for path in case["files"]:
            with open(path, "rb") as f:
                encoded.append(f.read())
        bench.prepare_serve(encoded)
        return [bench.call]
    from harness.torch_peer import TorchWorker

    worker = TorchWorker(threads=0)
    worker.prepare("serve_files", 0, 0, len(case["files"]), SEED, 0, COCO_THINGS,
                   files=case["files"], precision=case["precision"])
    return [worker.call]


def prepared_steps(model: str, case: dict) -> list:
    """One zero-argument train step per batch of case["batches"] (model: ours or torch), or
    the serving call of a serving case (one with "files")."""
    if "files" in case:
        return prepared_serving(model, case)
    calls = []
    if model == "ours":
        from harness.model_bench import OursBench

        bench = OursBench(case["config"], case["categories"])
        for batch in case["batches"]:
            bench.prepare_train(bench.train_batch(
                batch["batch"], SEED, case["instances"], tuple(batch["resized"]),
                tuple(batch["padded"]), tuple(batch["original"])))
            calls.append(bench.call)
    else:
        from harness.torch_peer import TorchWorker

        worker = TorchWorker(threads=0)
        for batch in case["batches"]:  # torchvision pads its batch to 32 itself
            worker.prepare("train", *batch["resized"], batch["batch"], SEED,
                           case["instances"], num_things=COCO_THINGS)
            calls.append(worker.call)
    return calls


def measure_here(model: str, case: dict) -> dict:
    """In the measured process: build, prepare, run -> what it saw."""
    calls = prepared_steps(model, case)
    built = _rss_mib()
    for call in calls:
        for _ in range(STEPS):
            call()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_MIB
    return {"model": model, "batches": case.get("batches", case.get("files")),
            "steps_per_batch": STEPS,
            "rss_after_build_mib": round(built, 1), "peak_rss_mib": round(peak, 1)}


def measure(python: str, model: str, case: dict) -> dict:
    """Runs measure_here in a fresh process of `python` (the benchmark venv's for torch,
    which gets this oanet_tf on its PYTHONPATH)."""
    env = dict(peer_env(), TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([python, "-m", __name__, model, json.dumps(case)],
                            capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{model} on {case['batches']} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def memory_row(name, config, categories, instances, batches, torch_python=None) -> dict:
    """benchmark.py's row of one case: the peak resident MiB of ours and, with
    torch_python, of torchvision, each measured in a fresh process; speed-up = theirs / ours
    (above 1: we use less). The size and batch are the first batch's; the note lists all."""
    case = {"config": config, "categories": categories, "instances": instances,
            "batches": batches}
    ours = measure(sys.executable, "ours", case)
    theirs = measure(torch_python, "torch", case) if torch_python else None
    shapes = ", ".join(f"{b['batch']}x{b['padded'][0]}x{b['padded'][1]}" for b in batches)
    built = f"ours {ours['rss_after_build_mib']:.0f}" + (
        f", torchvision {theirs['rss_after_build_mib']:.0f}" if theirs else "")
    peak = theirs["peak_rss_mib"] if theirs else None
    return row(SUITE, f"{name} peak RSS", batches[0]["padded"], batches[0]["batch"], "MiB",
               ours["peak_rss_mib"], peak, "torchvision" if theirs else "",
               peak / ours["peak_rss_mib"] if theirs else None,
               note=f"{shapes} (batch x padded size), {STEPS} steps each; after build: "
                    f"{built} MiB")


def serving_row(config, categories, files, precision, torch_python=None) -> dict:
    """benchmark.py's row of serving `files` (one batch) in `precision`: the peak resident
    MiB of ours and, with torch_python, of torchvision (bfloat16: autocast), each in a fresh
    process; speed-up = theirs / ours (above 1: we use less)."""
    case = {"config": config, "categories": categories, "files": list(files),
            "precision": precision}
    ours = measure(sys.executable, "ours", case)
    theirs = measure(torch_python, "torch", case) if torch_python else None
    names = ", ".join(os.path.basename(path) for path in files)
    built = f"ours {ours['rss_after_build_mib']:.0f}" + (
        f", torchvision {theirs['rss_after_build_mib']:.0f}" if theirs else "")
    peak = theirs["peak_rss_mib"] if theirs else None
    return row(SUITE, f"serving {precision} peak RSS", None, len(files), "MiB",
               ours["peak_rss_mib"], peak, "torchvision" if theirs else "",
               peak / ours["peak_rss_mib"] if theirs else None,
               note=f"{names}; {STEPS} calls; after build: {built} MiB")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="one measured process (see the docstring)")
    parser.add_argument("model", choices=MODELS)
    parser.add_argument("case", help="JSON: config, categories, instances, batches")
    args = parser.parse_args(argv)
    print(json.dumps(measure_here(args.model, json.loads(args.case))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
