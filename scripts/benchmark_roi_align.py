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
the largest absolute value of the gather method's (its scale).
--check-xla also tries the crop_and_resize method under jit_compile=True on the smallest case.

    python scripts/benchmark_roi_align.py [--sizes 800x1344 512x512] [--boxes 1000]
        [--repeats 5] [--warmup 1] [--check-xla] [--out runs/benchmark_roi_align.json]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time

import numpy as np
import tensorflow as tf

from oanet_tf.fileio import write_json
from oanet_tf.ops import roi_align

METHODS = roi_align.METHODS
MODES = ("forward", "forward+backward")
LEVELS = (2, 3, 4, 5)
MIN_BOX_SIDE = 8.0
ASPECT_RANGE = (0.5, 2.0)


def parse_size(text: str) -> tuple:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HEIGHTxWIDTH, got {text!r}") from None
    return height, width


def make_case(seed: int, size: tuple, batch: int, channels: int, num_boxes: int, dtype):
    """Random pyramid [B, ceil(H / 2^l), ceil(W / 2^l), C] per level and boxes [B, N, 4]."""
    rng = np.random.default_rng(seed)
    features = [tf.constant(rng.normal(size=(batch, math.ceil(size[0] / 2 ** l),
                                             math.ceil(size[1] / 2 ** l), channels)), dtype)
                for l in LEVELS]
    side = np.exp(rng.uniform(math.log(MIN_BOX_SIDE), math.log(min(size)),
                              size=(batch, num_boxes, 1)))
    aspect = np.sqrt(rng.uniform(*ASPECT_RANGE, size=(batch, num_boxes, 1)))
    half = np.concatenate([side * aspect, side / aspect], -1) / 2
    centre = rng.uniform(0.0, 1.0, size=(batch, num_boxes, 2)) * np.array(size)
    corners = np.concatenate([centre - half, centre + half], -1)
    boxes = np.clip(corners, 0.0, np.array(size * 2, np.float64))
    cotangent = rng.normal(size=(batch, num_boxes, 1, 1, channels))
    return features, tf.constant(boxes, tf.float32), tf.constant(cotangent, dtype)


def make_function(method: str, mode: str, output_size: int, sampling_ratio: int):
    """A tf.function (no AutoGraph, no XLA) of features, boxes, cotangent: the pooled
    features, or those and the gradients w.r.t. the features."""

    def forward(features, boxes, cotangent):
        del cotangent
        return roi_align.multilevel_roi_align(features, boxes, output_size, sampling_ratio,
                                              method=method)

    def backward(features, boxes, cotangent):
        with tf.GradientTape() as tape:
            tape.watch(features)
            pooled = forward(features, boxes, None)
            total = tf.reduce_sum(pooled * cotangent)
        # The gradient of a linear op does not need its output: return it too, or the
        # forward pass would be pruned from the graph.
        return pooled, tape.gradient(total, features)

    return tf.function(forward if mode == "forward" else backward, autograph=False)


def synced(call):
    """Call and wait for the device: fetch one element of the first output."""
    first = tf.nest.flatten(call())[0]
    tf.reshape(first, [-1])[:1].numpy()


def max_difference(a, b) -> tuple:
    """Largest |a - b| over all outputs, and largest |a| (its scale)."""
    pairs = [(tf.cast(x, tf.float32), tf.cast(y, tf.float32))
             for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b))]
    return (max(float(tf.reduce_max(tf.abs(x - y))) for x, y in pairs),
            max(float(tf.reduce_max(tf.abs(x))) for x, _ in pairs))


def time_case(functions: dict, inputs, warmup: int, repeats: int) -> dict:
    """Median seconds per method, the methods alternating (order flipped every round)."""
    seconds = {method: [] for method in functions}
    for round_index in range(warmup + repeats):
        order = list(functions) if round_index % 2 == 0 else list(functions)[::-1]
        for method in order:
            start = time.perf_counter()
            synced(lambda: functions[method](*inputs))
            if round_index >= warmup:
                seconds[method].append(time.perf_counter() - start)
    return seconds


def check_xla(inputs, output_size: int, sampling_ratio: int) -> dict:
    """Whether crop_and_resize compiles with jit_compile=True; the error's first line if not."""

    def call(features, boxes, cotangent):
        del cotangent
        return roi_align.multilevel_roi_align(features, boxes, output_size, sampling_ratio,
                                              method="crop_and_resize")

    try:
        tf.function(call, jit_compile=True, autograph=False)(*inputs)
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
            seconds = time_case(functions, inputs, args.warmup, args.repeats)
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
