"""Time multilevel_roi_align's two methods, "gather" and "crop_and_resize", side by side.

Each case is an FPN pyramid P2..P5 of random features for one image size and a set of random
proposal-like boxes (sides log-uniform between MIN_BOX_SIDE and the shorter image side,
clipped to the image, so every level gets boxes). Two modes: the forward pass alone, and
forward plus the gradient w.r.t. the features (of the sum of the output times a fixed random
cotangent). Both run as tf.function without XLA, as the model calls them. The two methods
alternate call by call (the order flipping every round), so both see the same machine load;
each gets --warmup untimed calls (tracing included), then --repeats timed calls, and the
median is reported, with gather / crop_and_resize as the speed-up. The largest absolute
difference between the two methods' outputs (and gradients) is recorded as well, next to
the largest absolute value of the gather method's (its scale). The cases and the timing
live in oanet_tf.benchmarking (the package is pip-installed).
--check-xla also tries the crop_and_resize method under jit_compile=True on the smallest case.

    python scripts/benchmark_roi_align.py [--sizes 800x1344 512x512] [--boxes 1000]
        [--repeats 5] [--warmup 1] [--check-xla] [--out runs/benchmark_roi_align.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys

import tensorflow as tf

from oanet_tf.benchmarking.inputs import parse_size
from oanet_tf.benchmarking.roi_align import LEVELS, METHODS, MODES, make_case, make_function
from oanet_tf.benchmarking.timing import alternating
from oanet_tf.fileio import write_json
from oanet_tf.ops import roi_align


def max_difference(a, b) -> tuple:
    """Largest |a - b| over all outputs, and largest |a| (its scale)."""
    pairs = [(tf.cast(x, tf.float32), tf.cast(y, tf.float32))
             for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b))]
    return (max(float(tf.reduce_max(tf.abs(x - y))) for x, y in pairs),
            max(float(tf.reduce_max(tf.abs(x))) for x, _ in pairs))


def check_xla(inputs, output_size: int, sampling_ratio: int) -> dict:
    """Whether crop_and_resize compiles with jit_compile=True; the error's first line if not."""
    try:
        make_function("crop_and_resize", "forward", output_size, sampling_ratio,
                      jit_compile=True)(*inputs)
    except (tf.errors.OpError, ValueError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return {"compiles": False, "error": f"{type(err).__name__}: {first}"}
    return {"compiles": True, "error": ""}


def benchmark(args) -> dict:
    dtype = tf.as_dtype(args.dtype)
    cases = []
    for size in args.sizes:
        inputs = make_case(args.seed, size, args.batch, args.channels, args.boxes, dtype)
        levels = roi_align.assign_levels(inputs[1]).numpy().ravel()
        per_level = {f"P{l}": int((levels == l).sum()) for l in LEVELS}
        for mode in MODES:
            functions = {m: make_function(m, mode, args.output_size, args.sampling_ratio)
                         for m in METHODS}
            difference, scale = max_difference(*(functions[m](*inputs) for m in METHODS))
            seconds = alternating(functions, inputs, args.warmup, args.repeats)
            medians = {m: statistics.median(s) for m, s in seconds.items()}
            cases.append({"size": list(size), "mode": mode, "boxes_per_level": per_level,
                          "median_s": medians, "seconds": seconds,
                          "speedup": medians["gather"] / medians["crop_and_resize"],
                          "max_abs_difference": difference, "max_abs_gather": scale})
            print(f"{size[0]}x{size[1]} {mode}: gather {medians['gather']:.3f} s, "
                  f"crop_and_resize {medians['crop_and_resize']:.3f} s", flush=True)
    report = {"conditions": {
        "tensorflow": tf.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "devices": [d.name for d in tf.config.list_logical_devices()],
        "batch": args.batch, "channels": args.channels, "boxes": args.boxes,
        "output_size": args.output_size, "sampling_ratio": args.sampling_ratio,
        "dtype": args.dtype, "warmup": args.warmup, "repeats": args.repeats,
        "seed": args.seed}, "cases": cases}
    if args.check_xla:
        smallest = min(args.sizes, key=lambda s: s[0] * s[1])
        inputs = make_case(args.seed, smallest, args.batch, args.channels, args.boxes, dtype)
        report["crop_and_resize_xla"] = check_xla(inputs, args.output_size, args.sampling_ratio)
    return report


def print_table(report: dict):
    header = (f"{'size':>10} {'mode':>17} {'gather s':>9} {'crop s':>9} {'ratio':>6} "
              f"{'max |diff|':>10} {'max |gather|':>12}")
    print(header)
    print("-" * len(header))
    for case in report["cases"]:
        size = "x".join(str(v) for v in case["size"])
        print(f"{size:>10} {case['mode']:>17} {case['median_s']['gather']:9.3f} "
              f"{case['median_s']['crop_and_resize']:9.3f} {case['speedup']:6.2f} "
              f"{case['max_abs_difference']:10.2e} {case['max_abs_gather']:12.2f}")
    if "crop_and_resize_xla" in report:
        xla = report["crop_and_resize_xla"]
        print(f"crop_and_resize under jit_compile=True: "
              f"{'compiles' if xla['compiles'] else 'fails: ' + xla['error']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=parse_size, nargs="+",
                        default=[(800, 1344), (512, 512)], metavar="HxW")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--boxes", type=int, default=1000, help="boxes per image")
    parser.add_argument("--output-size", type=int, default=7)
    parser.add_argument("--sampling-ratio", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16",
                                                               "float16"))
    parser.add_argument("--repeats", type=int, default=5, help="timed calls; median kept")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls (tracing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-xla", action="store_true",
                        help="also try crop_and_resize under jit_compile=True")
    parser.add_argument("--out", default="runs/benchmark_roi_align.json")
    args = parser.parse_args(argv)
    report = benchmark(args)
    print_table(report)
    write_json(args.out, report, indent=2)
    print(f"report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
