"""Peak resident memory of one training step: our R50 (coco_r50 config) and, as the peer,
torchvision's Mask R-CNN R50-FPN, each in a fresh process, at one size and batch size, or
(--coco) on the COCO-sized batches of the benchmark's coco suite.

Each case runs in its own child process (oanet_tf.benchmarking.memory): build the model, run
two training steps on each random batch (the first traces the step), then report the
process's peak resident set (ru_maxrss) and its resident set after building the model. The
input batch is what the training pipeline feeds (for ours: masks padded to
data.max_instances slots). With --coco each process runs a batch of 2 landscape 640x480
images resized as the config says (800x1067, padded 800x1088 for ours; torchvision pads
alike), then a batch of 2 portrait ones (oanet_tf.benchmarking.coco.train_cases). Both
models come from oanet_tf.benchmarking (the package is pip-installed; the torch child, in
the benchmark venv, gets it on its PYTHONPATH). "peak ratio" is ours over torchvision's.

    python scripts/benchmark_memory.py [--size 800x1344] [--batches 1 2] [--instances 8]
        [--torch-python /tmp/bench-venv/bin/python | --no-torch] [--out runs/memory.json]
    python scripts/benchmark_memory.py --coco [--instances 8] [--out runs/memory_coco.json]
"""

from __future__ import annotations

import argparse
import os
import sys

from oanet_tf.benchmarking import memory
from oanet_tf.benchmarking.inputs import DEFAULT_CATEGORIES, R50_CONFIG, parse_size
from oanet_tf.benchmarking.torch_peer import DEFAULT_TORCH_PYTHON, check_torch_python
from oanet_tf.fileio import write_json


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=(800, 1344), metavar="HxW")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--coco", action="store_true",
                        help="the coco suite's COCO-sized train batches instead of --size and "
                             "--batches")
    parser.add_argument("--instances", type=int, default=8)
    parser.add_argument("--config", default=R50_CONFIG)
    parser.add_argument("--categories", default=DEFAULT_CATEGORIES)
    parser.add_argument("--torch-python", default=DEFAULT_TORCH_PYTHON)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--out", default=None,
                        help="JSON report (default runs/memory.json, runs/memory_coco.json "
                             "with --coco)")
    args = parser.parse_args(argv)
    if not args.no_torch:
        check_torch_python(args.torch_python)
    if args.coco:
        cases = {"coco": memory.coco_batches(args.config)}
    else:
        cases = {f"batch {batch}": memory.batches_of_size(args.size, batch)
                 for batch in args.batches}
    rows = []
    for name, batches in cases.items():
        case = {"config": args.config, "categories": args.categories,
                "instances": args.instances, "batches": batches}
        ours = memory.measure(sys.executable, "ours", case)
        theirs = None if args.no_torch else memory.measure(args.torch_python, "torch", case)
        rows.append({"case": name, "ours": ours, "torchvision": theirs,
                     "peak_ratio": (ours["peak_rss_mib"] / theirs["peak_rss_mib"]
                                    if theirs else None)})
        shapes = ", ".join(f"{b['batch']}x{b['padded'][0]}x{b['padded'][1]}" for b in batches)
        line = f"{name} ({shapes}): ours peak {ours['peak_rss_mib']:.0f} MiB " \
               f"(after build {ours['rss_after_build_mib']:.0f})"
        if theirs:
            line += f", torchvision peak {theirs['peak_rss_mib']:.0f} MiB " \
                    f"(after build {theirs['rss_after_build_mib']:.0f}), " \
                    f"peak ratio {rows[-1]['peak_ratio']:.2f}"
        print(line, flush=True)
    out = args.out or os.path.join("runs", "memory_coco.json" if args.coco else "memory.json")
    write_json(out, {"steps_per_batch": memory.STEPS, "rows": rows}, indent=2)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
