"""Time OANet (R50) against torchvision's Mask R-CNN R50-FPN on this machine's CPU.

Ours: the coco_r50 config with random weights. Inference is the whole panoptic path
(PanopticPredictor: OANet.detect with the stuff branch and the SRM, then the merge); the train
step is OANet.train_step (every loss of Eq. 1, SGD update) in a tf.function compiled as
model.fit compiles it (the config's train.jit_compile). Theirs: torchvision's
maskrcnn_resnet50_fpn(weights=None, weights_backbone=None) with box_score_thresh=0, so that the
mask head always runs on 100 detections, and its transform set to keep the input size (no
resize); the train step is its losses, backward and an SGD step on random targets. Our
test_score_threshold is set to 0 as well, so both run NMS on every candidate.

Torch runs in a second process (the benchmark venv's python running
oanet_tf.benchmarking.torch_peer) that stays up for the whole run; the two alternate call by
call (one timed call of ours, one of theirs, ...), so both see the same machine load. Every
case gets --warmup untimed calls each, then --repeats timed calls; the median is reported.
--breakdown also times the parts of our batch-1 inference alone, each on our model's own
outputs: backbone+FPN (and theirs), the dense part, detect, the whole predictor, RoIAlign
and the box head at 1000 boxes, RoIAlign and the mask head at 100, paste_masks, the SRM and
its inputs, the ranking scores, the stuff probabilities and the merge; "rest" is detect minus
its timed parts (proposal selection, NMS, box decoding). The helpers live in
oanet_tf.benchmarking (the package is pip-installed).

    python scripts/benchmark_model.py [--sizes 512x512 800x1344] [--batches 1 2]
        [--modes infer train] [--repeats 3] [--warmup 1] [--breakdown]
        [--torch-python /tmp/bench-venv/bin/python] [--out runs/benchmark_model.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

from oanet_tf.benchmarking.breakdown import (format_breakdown, inference_breakdown,
                                             train_breakdown)
from oanet_tf.benchmarking.inputs import DEFAULT_CATEGORIES, R50_CONFIG, parse_size
from oanet_tf.benchmarking.model_bench import (JIT_CHOICES, MODES, OursBench,
                                               time_against_peer)
from oanet_tf.benchmarking.report import load_line, machine_load
from oanet_tf.benchmarking.timing import median
from oanet_tf.benchmarking.torch_peer import (DEFAULT_TORCH_PYTHON, TORCH_OMP_WAIT_POLICY,
                                              TorchClient)
from oanet_tf.data.panoptic_format import load_categories
from oanet_tf.errors import DatasetError

DEFAULT_SIZE = (512, 512)  # the default run (2 batch sizes, 2 modes) fits in ~15 min on 2 cores
DEFAULT_INSTANCES = 8


def case_row(size, batch, mode, ours, theirs) -> dict:
    row = {"size": list(size), "batch": batch, "mode": mode,
           "ours_seconds": median(ours), "ours_all_seconds": ours,
           "torchvision_seconds": median(theirs) if theirs else None,
           "torchvision_all_seconds": theirs}
    row["ratio"] = (row["ours_seconds"] / row["torchvision_seconds"]
                    if theirs else None)
    return row


def format_table(rows) -> str:
    lines = [f"{'size':>10} {'batch':>5} {'mode':>6} {'ours (s)':>10} {'torchvision (s)':>16} "
             f"{'ours/tv':>8}"]
    for row in rows:
        theirs = (f"{row['torchvision_seconds']:16.3f}" if row["torchvision_seconds"]
                  is not None else f"{'-':>16}")
        ratio = f"{row['ratio']:8.2f}" if row["ratio"] is not None else f"{'-':>8}"
        lines.append(f"{row['size'][0]:>5}x{row['size'][1]:<4} {row['batch']:>5} "
                     f"{row['mode']:>6} {row['ours_seconds']:10.3f} {theirs} {ratio}")
    return "\n".join(lines)


def run(args) -> dict:
    import keras
    import tensorflow as tf

    from oanet_tf.fileio import write_json

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    peer = None if args.no_torch else TorchClient(
        args.torch_python, args.threads, args.torch_omp_wait_policy)
    report = {"cpu_count": os.cpu_count(), "python": platform.python_version(),
              "tensorflow": tf.__version__, "keras": keras.__version__,
              "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
              "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
              "config": args.config, "warmup": args.warmup, "repeats": args.repeats,
              "instances_per_image": args.instances, "seed": args.seed,
              "load_before": machine_load(), "cases": [], "breakdown": {},
              "train_breakdown": {}}
    if peer is not None:
        report.update(peer.request("versions"))
    started = time.perf_counter()
    try:
        for size in args.sizes:
            bench = OursBench(args.config, args.categories, size, args.overrides, args.jit)
            report["ours_jit_compile_train"] = bench.jit_compile
            report["ours_parameters"] = int(bench.model.count_params())
            for mode in args.modes:
                for batch in args.batches:
                    ours, theirs = time_against_peer(bench, peer, mode, batch, args.seed,
                                                     args.instances, args.warmup,
                                                     args.repeats)
                    row = case_row(size, batch, mode, ours, theirs)
                    report["cases"].append(row)
                    print(format_table([row]).splitlines()[1], flush=True)
            if args.breakdown:
                key = f"{size[0]}x{size[1]}"
                if "infer" in args.modes:
                    parts = inference_breakdown(bench, peer, args.seed, args.warmup,
                                                args.repeats)
                    report["breakdown"][key] = parts
                    print(format_breakdown(f"inference at {key}", parts), flush=True)
                if "train" in args.modes:
                    parts = train_breakdown(bench, args.seed, args.instances, args.warmup,
                                            args.repeats)
                    report["train_breakdown"][key] = parts
                    print(format_breakdown(f"train step at {key}", parts), flush=True)
            del bench
            keras.backend.clear_session()
    finally:
        if peer is not None:
            peer.close()
    report["load_after"] = machine_load()
    report["wall_seconds"] = time.perf_counter() - started
    write_json(args.out, report, indent=2)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=R50_CONFIG)
    parser.add_argument("--categories", default=DEFAULT_CATEGORIES,
                        help="COCO panoptic categories JSON (local file; never downloaded)")
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=[DEFAULT_SIZE],
                        metavar="HxW", help="padded input sizes, multiples of 32 (800x1344 "
                        "takes minutes per call on 2 cores)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--instances", type=int, default=DEFAULT_INSTANCES,
                        help="random ground-truth instances per image in the train step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jit", choices=JIT_CHOICES, default="config",
                        help="XLA for our train step (default: the config's train.jit_compile)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the parts of our batch-1 inference")
    parser.add_argument("--torch-python", default=DEFAULT_TORCH_PYTHON)
    parser.add_argument("--no-torch", action="store_true", help="time ours only")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads of TF (intra- and inter-op) and of torch; 0: their "
                             "defaults (every core)")
    parser.add_argument("--torch-omp-wait-policy", default=TORCH_OMP_WAIT_POLICY,
                        help="OMP_WAIT_POLICY of the torch process ('' leaves it unset)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE", help="config override (repeatable)")
    parser.add_argument("--out", default=os.path.join("runs", "benchmark_model.json"))
    args = parser.parse_args(argv)
    try:
        load_categories(args.categories)  # before anything runs
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = run(args)
    print()
    print(format_table(report["cases"]))
    print(f"{load_line(report)}; report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
