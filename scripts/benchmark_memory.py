"""Peak resident memory of one training step: our R50 (coco_r50 config) and, as the peer,
torchvision's Mask R-CNN R50-FPN, each in a fresh process, at one size and batch size.

Each case runs in its own child process: build the model, run two training steps on a
random batch (the first traces the step), then report the process's peak resident set
(ru_maxrss) and its resident set after building the model. The input batch is what the
training pipeline feeds (for ours: masks padded to data.max_instances slots). Both models
come from oanet_tf.benchmarking (the package is pip-installed; the torch child, in the
benchmark venv, gets it on its PYTHONPATH).

    python scripts/benchmark_memory.py [--size 800x1344] [--batches 1 2] [--instances 8]
        [--torch-python /tmp/bench-venv/bin/python | --no-torch] [--out runs/memory.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

from oanet_tf.benchmarking.inputs import DEFAULT_CATEGORIES, R50_CONFIG, parse_size
from oanet_tf.benchmarking.torch_peer import DEFAULT_TORCH_PYTHON, check_torch_python, peer_env
from oanet_tf.fileio import write_json

STEPS = 2
KIB_PER_MIB = 1024  # ru_maxrss is in KiB on Linux
BYTES_PER_MIB = 2**20
COCO_THINGS = 80  # torchvision's Mask R-CNN classes, less the background


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / BYTES_PER_MIB


def child(args) -> dict:
    """Runs in the measured process; returns what it saw."""
    if args.child == "ours":
        from oanet_tf.benchmarking.model_bench import OursBench

        bench = OursBench(args.config, args.categories, args.size)
        bench.prepare("train", args.batch, 0, args.instances)
    else:
        from oanet_tf.benchmarking.torch_peer import TorchWorker

        bench = TorchWorker(threads=0)
        bench.prepare("train", *args.size, args.batch, 0, args.instances,
                      num_things=COCO_THINGS)
    built = _rss_mib()
    for _ in range(STEPS):
        bench.call()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_MIB
    return {"model": args.child, "batch": args.batch, "size": list(args.size),
            "rss_after_build_mib": round(built, 1), "peak_rss_mib": round(peak, 1)}


def measure(python: str, which: str, args, batch: int) -> dict:
    """Runs this file with --child in a fresh process of `python` (the benchmark venv's for
    torch, which gets this oanet_tf on its PYTHONPATH)."""
    env = dict(peer_env(), TF_CPP_MIN_LOG_LEVEL="3")
    command = [python, os.path.abspath(__file__), "--child", which, "--batch", str(batch),
               "--size", "x".join(str(s) for s in args.size), "--instances",
               str(args.instances), "--config", args.config, "--categories", args.categories]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{which} batch {batch} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=("ours", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=parse_size, default=(800, 1344), metavar="HxW")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--instances", type=int, default=8)
    parser.add_argument("--config", default=R50_CONFIG)
    parser.add_argument("--categories", default=DEFAULT_CATEGORIES)
    parser.add_argument("--torch-python", default=DEFAULT_TORCH_PYTHON)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--out", default=os.path.join("runs", "memory.json"))
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    if not args.no_torch:
        check_torch_python(args.torch_python)
    rows = []
    for batch in args.batches:
        ours = measure(sys.executable, "ours", args, batch)
        theirs = None if args.no_torch else measure(args.torch_python, "torch", args, batch)
        rows.append({"batch": batch, "ours": ours, "torchvision": theirs,
                     "peak_ratio": (ours["peak_rss_mib"] / theirs["peak_rss_mib"]
                                    if theirs else None)})
        line = f"batch {batch}: ours peak {ours['peak_rss_mib']:.0f} MiB " \
               f"(after build {ours['rss_after_build_mib']:.0f})"
        if theirs:
            line += f", torchvision peak {theirs['peak_rss_mib']:.0f} MiB " \
                    f"(after build {theirs['rss_after_build_mib']:.0f}), " \
                    f"ratio {rows[-1]['peak_ratio']:.2f}"
        print(line, flush=True)
    write_json(args.out, {"size": list(args.size), "steps": STEPS, "rows": rows}, indent=2)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
