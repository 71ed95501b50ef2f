"""The GPU check (scripts/device_check.sh runs it): our R50 train step and inference on one
GPU beside torchvision's Mask R-CNN R50-FPN on the same GPU, in one run, as a JSON report
and a Markdown table.

Rows (random weights, random images; see model_bench and torch_peer for what each call is):
- train step, images per second, at --size and --train-batch: ours under --precision
  (mixed_bfloat16 by default), without and with XLA; torchvision in float32 and under
  bfloat16 autocast;
- inference latency (ours: PanopticPredictor, the merge included) at each --infer-batches,
  ours under --precision, torchvision in both precisions;
- the peak GPU memory of every row (TensorFlow's allocator statistics; torch's
  max_memory_allocated);
- with --breakdown, last: each stage of our batch-1 inference at --size timed alone, with its
  multiply-adds and its rate against the ResNet trunk's (harness.breakdown), in float32 and
  in bfloat16 (one model each), under the report's "breakdown" and as a second table.
Every row is written as soon as it is measured (temp file, then rename), and no new row
starts once --budget-s has passed, so a run cut short keeps what it measured.

--dry-run runs the same code on the CPU at a tiny size (CI checks it without a GPU).

    python -m harness.device_check [--dry-run] [--size 1024 1024]  # from benchmarks/
        [--train-batch 8] [--infer-batches 1 8] [--precision mixed_bfloat16]
        [--xla both|on|off] [--config C] [--torch-python PYTHON] [--breakdown]
        [--out runs/device_check.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

from harness.inputs import R50_CONFIG, SYNTHETIC_CONFIG
from harness.timing import median, timed_calls
from oanet_tf.fileio import atomic_open, write_json

# COCO panoptic's categories: 80 things and 53 stuff (the counts are all a random-weight
# model needs; the device machine has no COCO files).
COCO_THINGS, COCO_STUFF = 80, 53
INSTANCES = 8  # ground-truth instances per training image
SEED = 0
XLA_CHOICES = {"both": (False, True), "on": (True,), "off": (False,)}
TORCH_PRECISIONS = ("float32", "bfloat16")
BYTES_PER_GIB = 2 ** 30
DEFAULT_BUDGET_S = 360  # leaves the installs of device_check.sh inside 8 minutes
BREAKDOWN_PRECISIONS = ("float32", "bfloat16")
DRY_RUN = {"size": (64, 64), "train_batch": 2, "infer_batches": (1,), "warmup": 0,
           "repeats": 1}


def coco_categories(num_things: int = COCO_THINGS, num_stuff: int = COCO_STUFF) -> list:
    """COCO-format category dicts: num_things things, then num_stuff stuff."""
    return [{"id": k + 1, "name": f"category_{k + 1}", "isthing": int(k < num_things)}
            for k in range(num_things + num_stuff)]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="on the CPU at a tiny size, the synthetic config's small model")
    parser.add_argument("--size", type=int, nargs=2, default=(1024, 1024),
                        metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--infer-batches", type=int, nargs="+", default=(1, 8))
    parser.add_argument("--precision", default="mixed_bfloat16",
                        choices=("float32", "mixed_bfloat16", "mixed_float16"))
    parser.add_argument("--config", default="",
                        help="our model's config (default: configs/coco_r50.yaml; "
                             "configs/synthetic.yaml with --dry-run)")
    parser.add_argument("--xla", choices=tuple(XLA_CHOICES), default="both",
                        help="our train step without XLA, with it, or both")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                        help="start no new row after this many seconds")
    parser.add_argument("--torch-python", default="",
                        help="a python with torch and torchvision (none: ours alone)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also the stages of our batch-1 inference, float32 and bfloat16")
    parser.add_argument("--out", default="runs/device_check.json",
                        help="the JSON report; the table goes beside it as .md")
    args = parser.parse_args(argv)
    if args.dry_run:
        for key, value in DRY_RUN.items():
            setattr(args, key, value)
    return args


class Report:
    """The report, rewritten whole after each row so that a cut run keeps its rows."""

    def __init__(self, path: str, header: dict):
        self.path = path
        self.data = {**header, "rows": []}

    def add(self, row: dict):
        self.data["rows"].append(row)
        print(format_row(row), flush=True)
        self.write()

    def write(self):
        write_json(self.path, self.data, indent=2)
        with atomic_open(os.path.splitext(self.path)[0] + ".md") as f:
            f.write(format_table(self.data) + "\n")


def format_row(row: dict) -> str:
    memory = row["peak_memory_gib"]
    memory = f"{memory:.2f}" if memory is not None else "-"
    return (f"| {row['model']} | {row['mode']} | {row['precision']} | "
            f"{'on' if row['xla'] else 'off'} | {row['batch']} | {row['value']:.3f} "
            f"{row['unit']} | {memory} |")


def format_table(report: dict) -> str:
    lines = [f"{report['device']}, {report['size'][0]}x{report['size'][1]}, "
             f"median of {report['repeats']}",
             "",
             "| model | mode | precision | XLA | batch | value | peak GPU memory (GiB) |",
             "|---|---|---|---|---|---|---|"]
    lines += [format_row(row) for row in report["rows"]]
    if report.get("breakdown"):
        from harness.breakdown import markdown_table

        lines += ["", "Batch-1 inference by stage (seconds, share of the whole, multiply-adds, "
                      "rate and rate / the trunk's)", "", markdown_table(report["breakdown"])]
    return "\n".join(lines)


def _peak_gib_ours(gpu: bool):
    import tensorflow as tf

    if not gpu:
        return None
    peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]
    tf.config.experimental.reset_memory_stats("GPU:0")
    return peak / BYTES_PER_GIB


def _timed(call, warmup: int, repeats: int) -> float:
    """Median seconds of `repeats` calls after `warmup` untimed ones."""
    timed_calls(call, warmup)
    return median(timed_calls(call, repeats))


def _row(model, mode, precision, xla, batch, seconds, peak_gib) -> dict:
    value, unit = (batch / seconds, "images/s") if mode == "train" else (seconds, "s")
    return {"model": model, "mode": mode, "precision": precision, "xla": xla, "batch": batch,
            "seconds": seconds, "value": value, "unit": unit, "peak_memory_gib": peak_gib}


class Budget:
    """Whether a new row may start: no, for good, once `seconds` have passed."""

    def __init__(self, seconds: float):
        self.start, self.seconds, self.cut = time.perf_counter(), seconds, False

    def left(self) -> bool:
        if time.perf_counter() - self.start >= self.seconds:
            self.cut = True
        return not self.cut


def _ours_rows(args, report: Report, config: str, categories: str, gpu: bool,
               budget: Budget):
    """Our train step without and/or with XLA (args.xla), and inference at each of
    args.infer_batches (without XLA), each row added as it is measured."""
    from harness.model_bench import OursBench

    size = tuple(args.size)
    for xla in XLA_CHOICES[args.xla]:
        if not budget.left():
            return
        overrides = [f"train.mixed_precision={args.precision}"]
        if xla:  # XLA compiles static shapes: one bucket of the images' size
            overrides.append(f"data.buckets=[[{size[0]}, {size[1]}]]")
        bench = OursBench(config, categories, size, overrides,
                          jit_compile="true" if xla else "false")
        _peak_gib_ours(gpu)
        bench.prepare("train", args.train_batch, SEED, INSTANCES)
        seconds = _timed(bench.call, args.warmup, args.repeats)
        report.add(_row("oanet_tf", "train", args.precision, xla, args.train_batch, seconds,
                        _peak_gib_ours(gpu)))
        if xla:
            continue
        for batch in args.infer_batches:
            if not budget.left():
                return
            bench.prepare("infer", batch, SEED, INSTANCES)
            seconds = _timed(bench.call, args.warmup, args.repeats)
            report.add(_row("oanet_tf", "infer", args.precision, False, batch, seconds,
                            _peak_gib_ours(gpu)))


def _breakdown_rows(args, report: Report, config: str, categories: str, budget: Budget):
    """Each stage of our batch-1 inference at args.size (harness.breakdown) in each of
    BREAKDOWN_PRECISIONS, added to the report's "breakdown" as each precision is measured."""
    import keras

    from harness import breakdown
    from harness.model_bench import OursBench

    size = tuple(args.size)
    report.data["breakdown"] = []
    for precision in BREAKDOWN_PRECISIONS:
        if not budget.left():
            return
        bench = OursBench(config, categories, size, [], "false", precision)
        calls, macs, _ = breakdown.inference_stages(bench, SEED)
        table = breakdown.stage_table(
            breakdown.timed_stages(calls, args.warmup, args.repeats), macs)
        report.data["breakdown"] += breakdown.breakdown_rows("infer", size, 1, precision, table)
        report.write()
        del bench
        keras.backend.clear_session()


def _torch_rows(args, report: Report, gpu: bool, budget: Budget):
    """torchvision's train step and inference in each of TORCH_PRECISIONS, on the GPU (the
    CPU without one), each row added as it is measured."""
    from harness.torch_peer import TorchClient

    peer = TorchClient(args.torch_python)
    try:
        report.data["torch"] = peer.request("versions")
        for precision in TORCH_PRECISIONS:
            for mode, batches in (("train", (args.train_batch,)),
                                  ("infer", tuple(args.infer_batches))):
                for batch in batches:
                    if not budget.left():
                        return
                    peer.prepare(mode, tuple(args.size), batch, SEED, INSTANCES, COCO_THINGS,
                                 device="cuda" if gpu else "cpu", precision=precision)
                    peer.peak_memory()
                    if args.warmup:
                        peer.time(args.warmup)
                    seconds = median(peer.time(args.repeats))
                    peak = peer.peak_memory()
                    report.add(_row("torchvision", mode, precision, False, batch, seconds,
                                    peak / BYTES_PER_GIB if peak is not None else None))
    finally:
        peer.close()


def run(args) -> dict:
    """Every row args ask for, within args.budget_s -> the report's data."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and not args.dry_run:
        raise SystemExit("error: TensorFlow sees no GPU; --dry-run runs on the CPU")
    budget = Budget(args.budget_s)
    device = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") \
        if gpus else f"CPU ({platform.processor() or platform.machine()})"
    config = args.config or (SYNTHETIC_CONFIG if args.dry_run else R50_CONFIG)
    report = Report(args.out, {
        "device": device, "size": list(args.size), "train_batch": args.train_batch,
        "infer_batches": list(args.infer_batches), "precision": args.precision,
        "config": config, "warmup": args.warmup, "repeats": args.repeats,
        "dry_run": args.dry_run,
        "tensorflow": tf.__version__, "python": platform.python_version()})
    categories = os.path.join(tempfile.mkdtemp(prefix="device_check_"), "categories.json")
    write_json(categories, coco_categories())
    keras.mixed_precision.set_global_policy(args.precision)
    _ours_rows(args, report, config, categories, bool(gpus), budget)
    if args.torch_python:
        _torch_rows(args, report, bool(gpus), budget)
    if args.breakdown:
        _breakdown_rows(args, report, config, categories, budget)
    report.data["complete"] = not budget.cut
    report.data["wall_s"] = time.perf_counter() - budget.start
    report.write()
    return report.data


def main(argv=None) -> int:
    args = parse_args(argv)
    data = run(args)
    print(format_table(data))
    print(f"report written to {args.out} and {os.path.splitext(args.out)[0]}.md "
          f"({data['wall_s']:.0f} s{'' if data['complete'] else ', cut at the budget'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
