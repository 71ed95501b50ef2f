"""The one benchmark entry point: every speed row of the project, each beside its peer.

Suites (all on this machine's CPU, peers run in the same session, interleaved call by call):
  model      R50 (configs/coco_r50.yaml, random weights) against torchvision's
             maskrcnn_resnet50_fpn (100 detections) at each --sizes and --batches:
             serve  end-to-end inference: encoded JPEG in, panoptic result out (ours: the
                    export's serving function, merge at the original size included);
             infer  the model alone on decoded tensors (ours: detect + merge);
             train  one training step, as images per second.
  synthetic  the demo's small config (configs/synthetic.yaml, 128x128): serve, infer and
             train, ours alone (no peer runs this model).
  input      the input pipeline (decode + augment + batch) from COCO files and from
             TFRecords, in images per second, against the train step it feeds (target: at
             least 3 times its images per second).
  evaluator  our PQ evaluator against panopticapi's pq_compute, images per second.
  ops        the ops the model picks when it does not compile with XLA against their
             XLA-compilable variants, at each --sizes: RoIAlign (crop_and_resize vs
             gather, 1000 boxes, forward and forward+backward) and proposal NMS (greedy
             C++ kernel vs padded, 4000 boxes -> 1000), and the SRM on the cells its
             loss or Eq. 3 reads vs on every pixel (loss forward+backward, score map).

"speed-up" is the peer's time over ours (above 1: we are faster); for the input rows it is
the pipeline's images per second over the train step's. A table goes to stdout, everything
(with all timings and the machine load) to --out as JSON.

    python scripts/benchmark.py [--suites model synthetic input evaluator]
        [--sizes 512x512 800x1344] [--batches 1 2] [--repeats 3] [--warmup 1]
        [--torch-python /tmp/bench-venv/bin/python | --no-torch] [--out runs/benchmark.json]

A full run takes about an hour on 2 cores; `--suites synthetic input evaluator` takes minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, SCRIPTS)
from benchmark_model import (DEFAULT_CATEGORIES, DEFAULT_CONFIG, DEFAULT_TORCH_PYTHON,  # noqa: E402
                             REPO_ROOT, TORCH_OMP_WAIT_POLICY, OursBench, TorchClient,
                             interleaved, load_line, machine_load, median,
                             parse_size)

sys.path.insert(0, REPO_ROOT)
SUITES = ("model", "synthetic", "input", "evaluator", "ops")
SYNTHETIC_CONFIG = os.path.join(REPO_ROOT, "configs", "synthetic.yaml")
MODEL_MODES = ("serve", "infer", "train")
INPUT_CASES = ("synthetic_128", "synthetic_640x480")  # the synthetic and the R50 settings
INPUT_TARGET = 3.0  # the pipeline must deliver 3x the train step's images per second
EVALUATOR_IMAGES = 500
EVALUATOR_SIZE = (128, 128)
INSTANCES = 8  # random ground-truth instances per training image
# The ops suite's inputs: as many boxes as the R50 config's proposals and detections.
OPS_PROPOSAL_CANDIDATES, OPS_PROPOSALS = 4000, 1000
OPS_CHANNELS = 256
OPS_SRM_THINGS = 80  # COCO's thing categories, the SRM's channels
OPS_DETECTIONS = 100  # the R50 config's detections per image
OPS_SRM_CATEGORIES = 10  # categories among those detections in the SRM score-map row


def row(suite, case, size, batch, unit, ours, peer=None, peer_name="", speedup=None,
        note="") -> dict:
    return {"suite": suite, "case": case, "size": list(size) if size else None,
            "batch": batch, "unit": unit, "ours": ours, "peer": peer, "peer_name": peer_name,
            "speedup": speedup, "note": note}


def model_rows(bench, size, batches, torch_client, args, suite="model"):
    """serve / infer latency and train images per second, with torchvision when given."""
    rows = []
    for mode in MODEL_MODES:
        for batch in batches:
            bench.prepare(mode, batch, args.seed, INSTANCES)
            torch_time = None
            if torch_client is not None:
                torch_client.request("prepare", mode=mode, height=size[0], width=size[1],
                                     batch=batch, seed=args.seed, instances=INSTANCES,
                                     num_things=bench.categories.num_things)
                torch_time = torch_client.time
            ours, theirs = interleaved(bench.call, torch_time, args.warmup, args.repeats)
            ours_s, theirs_s = median(ours), (median(theirs) if theirs else None)
            speedup = theirs_s / ours_s if theirs_s else None
            peer = "torchvision" if theirs_s else ""
            if mode == "train":
                rows.append(row(suite, "train step", size, batch, "images/s", batch / ours_s,
                                batch / theirs_s if theirs_s else None, peer, speedup))
            else:
                case = "end-to-end (JPEG in)" if mode == "serve" else "model alone"
                rows.append(row(suite, case, size, batch, "s/batch", ours_s, theirs_s, peer,
                                speedup))
            print(format_rows(rows[-1:], header=False), flush=True)
    return rows


def model_suite(args, torch_client) -> list:
    import keras

    rows = []
    for size in args.sizes:
        bench = OursBench(args.config, args.categories, size, [], "config")
        rows += model_rows(bench, size, args.batches, torch_client, args)
        del bench
        keras.backend.clear_session()
    return rows


def synthetic_suite(args, work_dir) -> list:
    """The demo config: its own categories (from a generated synthetic split)."""
    from oanet_tf.config import load_config
    from oanet_tf.data.synthetic import make_synthetic_dataset

    config = load_config(SYNTHETIC_CONFIG)
    root = os.path.join(work_dir, "synthetic_model")
    make_synthetic_dataset(root, 0, 2, 0, tuple(config.data.synthetic_size), progress=False)
    bench = OursBench(SYNTHETIC_CONFIG, os.path.join(root, "val", "panoptic.json"),
                      tuple(config.data.padded_size), [], "config")
    return model_rows(bench, tuple(config.data.padded_size),
                      sorted({1, config.train.batch_size}), None, args, suite="synthetic")


def input_suite(args, work_dir, train_rows) -> list:
    """Pipeline images per second from files and TFRecords, against the train step of the
    same settings (the synthetic config's, or R50's at the largest size measured)."""
    from benchmark_input import run_case

    options = argparse.Namespace(synthetic_images=64, small_batches=40, real_images=8,
                                 real_batch_size=2, real_batches=10, num_shards=4,
                                 threads=os.cpu_count() or 2, repeats=args.repeats,
                                 coco_sample="")
    rows = []
    for case in INPUT_CASES:
        result = run_case(case, work_dir, options)
        suite = "synthetic" if case == "synthetic_128" else "model"
        steps = [r for r in train_rows if r["suite"] == suite and r["case"] == "train step"]
        step = max(steps, key=lambda r: (r["size"][0] * r["size"][1], r["ours"]),
                   default=None)
        for source in ("files", "tfrecords"):
            rate = result[f"{source}_images_per_second"]
            rows.append(row("input", f"{case} from {source}", result["padded_size"],
                            result["batch_size"], "images/s", rate,
                            step["ours"] if step else None,
                            f"train step ({suite}, {step['size'][0]}x{step['size'][1]}, "
                            f"batch {step['batch']})" if step else "",
                            rate / step["ours"] if step else None,
                            note=f"target >= {INPUT_TARGET:g}x the train step"))
            print(format_rows(rows[-1:], header=False), flush=True)
    return rows


def evaluator_suite(args, work_dir) -> list:
    from benchmark_pq import benchmark

    report = benchmark(os.path.join(work_dir, "pq"), EVALUATOR_IMAGES, EVALUATOR_SIZE,
                       args.seed, os.cpu_count() or 1, args.repeats)
    ours = EVALUATOR_IMAGES / report["ours_seconds"]
    theirs = EVALUATOR_IMAGES / report["pq_compute_seconds"]
    return [row("evaluator", "PQ evaluation", EVALUATOR_SIZE, None, "images/s", ours, theirs,
                "panopticapi pq_compute", ours / theirs,
                note=f"max |difference| {report['max_abs_difference']:.1e}")]


def ops_suite(args) -> list:
    """The fast ops against the XLA-compilable ones, same inputs, alternating calls."""
    import numpy as np
    import tensorflow as tf

    from benchmark_roi_align import make_case, make_function, time_case
    from oanet_tf.ops import nms

    rows = []
    rng = np.random.default_rng(args.seed)
    for size in args.sizes:
        features, boxes, cotangent = make_case(args.seed, size, 1, OPS_CHANNELS, OPS_PROPOSALS,
                                               tf.float32)
        for mode in ("forward", "forward+backward"):
            functions = {method: make_function(method, mode, 7, 2)
                         for method in ("crop_and_resize", "gather")}
            seconds = time_case(functions, (features, boxes, cotangent), args.warmup,
                                args.repeats)
            rows.append(_ops_row(f"RoIAlign 7x7 {mode}", size, seconds, "crop_and_resize",
                                 "gather", "gather (XLA-compilable)"))
        scale = np.array(size * 2, np.float32)
        corners = np.sort(rng.uniform(0, 1, (1, OPS_PROPOSAL_CANDIDATES, 2, 2)), axis=2)
        candidates = tf.constant(corners.transpose(0, 1, 3, 2).reshape(1, -1, 4) * scale,
                                 tf.float32)
        scores = tf.constant(rng.uniform(size=(1, OPS_PROPOSAL_CANDIDATES)), tf.float32)
        functions = {xla: tf.function(lambda b, s, xla=xla: nms.batched_nms(
            b, s, OPS_PROPOSALS, 0.7, xla=xla)[3]) for xla in (False, True)}
        seconds = time_case(functions, (candidates, scores), args.warmup, args.repeats)
        rows.append(_ops_row(f"proposal NMS {OPS_PROPOSAL_CANDIDATES}->{OPS_PROPOSALS}", size,
                             seconds, False, True, "padded (XLA-compilable)"))
        rows.extend(_srm_rows(args, size))
    print(format_rows(rows, header=False), flush=True)
    return rows


def _srm_rows(args, size) -> list:
    """The SRM as the model runs it without XLA (cells read only) against every pixel: the
    loss forward+backward on INSTANCES random ground-truth boxes, and Eq. 3's score map on
    OPS_DETECTIONS random filled boxes of OPS_SRM_CATEGORIES categories (far more pixels
    covered than the random-weight detections of the model rows)."""
    import numpy as np
    import tensorflow as tf

    from benchmark_model import random_instances
    from benchmark_roi_align import time_case
    from oanet_tf.modeling import srm as srm_lib

    layer = srm_lib.SpatialRankingModule(OPS_SRM_THINGS, "gcn", 7)
    layer.build((None, *size, OPS_SRM_THINGS))
    _, classes, masks = random_instances(args.seed, 1, *size, INSTANCES, OPS_SRM_THINGS)
    owner = np.full((1, *size), 255, np.int32)
    for mask, cls in zip(masks[0], classes[0]):  # later instances lie on top
        owner[0][mask > 0] = cls - 1
    channels, count = srm_lib.srm_inputs(masks, classes, OPS_SRM_THINGS)
    owner = tf.constant(owner)

    def loss_gradients(sparse):
        with tf.GradientTape() as tape:
            if sparse:
                loss = srm_lib.srm_loss_on_conflicts(layer, channels, owner, count)
            else:
                loss = srm_lib.srm_loss(layer(channels), owner, count)
        return tape.gradient(loss, layer.trainable_variables)

    functions = {sparse: tf.function(lambda sparse=sparse: loss_gradients(sparse))
                 for sparse in (True, False)}
    seconds = time_case(functions, (), args.warmup, args.repeats)
    conflicting = float(np.mean(count.numpy() >= srm_lib.MIN_CONFLICT_COUNT))
    rows = [_ops_row(f"SRM loss fwd+bwd, {INSTANCES} instances", size, seconds, True, False,
                     "every pixel (XLA-compilable)",
                     note=f"{conflicting:.1%} of pixels conflicting")]
    _, classes, masks = random_instances(args.seed + 1, 1, *size, OPS_DETECTIONS,
                                         OPS_SRM_CATEGORIES)
    channels, _ = srm_lib.srm_inputs(masks, classes, OPS_SRM_THINGS)
    functions = {True: tf.function(layer.covered_score_map),
                 False: tf.function(lambda c: tf.nn.softmax(layer(c)))}
    seconds = time_case(functions, (channels,), args.warmup, args.repeats)
    covered = float(np.mean(masks.any(axis=1)))
    rows.append(_ops_row(f"SRM score map, {OPS_DETECTIONS} boxes", size, seconds, True,
                         False, "every pixel (XLA-compilable)",
                         note=f"{covered:.1%} of pixels covered, "
                              f"{OPS_SRM_CATEGORIES} categories"))
    return rows


def _ops_row(case, size, seconds, ours_key, peer_key, peer_name, note=""):
    """A row of the ops suite from time_case's {variant: [seconds]}."""
    ours, peer = median(seconds[ours_key]), median(seconds[peer_key])
    return row("ops", case, size, 1, "s/call", ours, peer, peer_name, peer / ours, note)


def format_rows(rows, header=True) -> str:
    lines = [f"{'suite':<10}{'case':<34}{'size':>10}{'batch':>6}{'ours':>10}{'peer':>10}"
             f"{'unit':>10}{'speed-up':>10}  peer"] if header else []
    for r in rows:
        size = "x".join(str(s) for s in r["size"]) if r["size"] else "-"
        peer = f"{r['peer']:10.3f}" if r["peer"] is not None else f"{'-':>10}"
        speedup = f"{r['speedup']:10.2f}" if r["speedup"] is not None else f"{'-':>10}"
        batch = r["batch"] if r["batch"] is not None else "-"
        lines.append(f"{r['suite']:<10}{r['case']:<34}{size:>10}{batch:>6}{r['ours']:10.3f}"
                     f"{peer}{r['unit']:>10}{speedup}  {r['peer_name']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", nargs="+", choices=SUITES, default=list(SUITES))
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=[(512, 512), (800, 1344)],
                        metavar="HxW")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--categories", default=DEFAULT_CATEGORIES,
                        help="COCO panoptic categories JSON for the R50 model (local file)")
    parser.add_argument("--torch-python", default=DEFAULT_TORCH_PYTHON,
                        help="a Python with torch and torchvision (the peer)")
    parser.add_argument("--no-torch", action="store_true", help="time ours only")
    parser.add_argument("--out", default=os.path.join("runs", "benchmark.json"))
    args = parser.parse_args(argv)
    if "model" in args.suites and not os.path.isfile(args.categories):
        print(f"error: categories file not found: {args.categories} (the COCO panoptic "
              f"categories JSON; nothing is downloaded)", file=sys.stderr)
        return 2

    import keras
    import tensorflow as tf

    from oanet_tf.fileio import write_json

    report = {"cpu_count": os.cpu_count(), "tensorflow": tf.__version__,
              "keras": keras.__version__, "load_before": machine_load(), "rows": []}
    started = time.perf_counter()
    torch_client = None
    if "model" in args.suites and not args.no_torch:
        torch_client = TorchClient(args.torch_python, 0, TORCH_OMP_WAIT_POLICY)
        report.update(torch_client.request("versions"))
    print(format_rows([]), flush=True)
    suites = {"model": lambda work_dir: model_suite(args, torch_client),
              "synthetic": lambda work_dir: synthetic_suite(args, work_dir),
              "input": lambda work_dir: input_suite(args, work_dir, report["rows"]),
              "evaluator": lambda work_dir: evaluator_suite(args, work_dir),
              "ops": lambda work_dir: ops_suite(args)}
    try:
        with tempfile.TemporaryDirectory() as work_dir:
            for name in SUITES:
                if name in args.suites:
                    report["rows"] += suites[name](work_dir)
                    write_json(args.out, report, indent=2)  # a later failure keeps these rows
    finally:
        if torch_client is not None:
            torch_client.close()
    report["load_after"] = machine_load()
    report["wall_seconds"] = time.perf_counter() - started
    write_json(args.out, report, indent=2)
    print()
    print(format_rows(report["rows"]))
    print(f"{load_line(report)}; {report['wall_seconds']:.0f} s; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
