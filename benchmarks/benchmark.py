"""The one benchmark entry point: every speed and memory row of the project, each beside its
peer.

Suites (all on this machine's CPU, peers run in the same session, interleaved call by call):
  model      R50 (configs/coco_r50.yaml, random weights) against torchvision's
             maskrcnn_resnet50_fpn (100 detections) at each --sizes and --batches, in each
             of --modes:
             serve  end-to-end inference: encoded JPEG in, panoptic result out (ours: the
                    export's serving function, merge at the original size included);
             infer  the model alone on decoded tensors (ours: detect + merge);
             train  one training step, as images per second.
  coco       the same pair on COCO's own sizes, each image resized as the config says and
             a batch padded to its own size: the real COCO JPEGs of --coco-sample (640x427,
             640x360) end to end (torchvision with its default transform), each at batch 1
             and both at batch 2; a train step on 2 landscape 640x480 images (800x1067 in
             800x1088), then on 2 portrait ones, as images per second.
  breakdown  at each --sizes, each stage of our batch-1 inference timed alone on our model's
             own outputs (backbone, FPN, RPN head, stuff head, stuff probabilities,
             proposals, RoIAlign and the box head at the proposals, the box selection
             (class-wise NMS), RoIAlign and the mask head at the detections, the mask
             pixels, the SRM inputs, the SRM, the ranking scores, the merge; "remainder" is
             the whole predictor minus its stages), then each stage of our train step
             forward+backward on the coco suite's landscape batch of 2; each with its share
             of the whole, its multiply-adds (from the layers' shapes) and its rate against
             the ResNet trunk's, in each --precision.
  memory     peak resident memory (ru_maxrss), ours and torchvision's, each model in a
             fresh process: with --modes train, two train steps of one random batch per
             --sizes and --batches, then the coco suite's landscape and portrait batches in
             one process; with --modes serve, serving the first COCO sample JPEG alone and
             both together, in each --precision.
  synthetic  the demo's small config (configs/synthetic.yaml, 128x128): serve, infer and
             train, ours alone (no peer runs this model).
  precision  the same config built in bfloat16 against float32, both ours: serve and train.
  input      the input pipeline (decode + augment + batch) from COCO files and from
             TFRecords, in images per second, against the train step it feeds (target: at
             least 3 times its images per second), and the decode step alone, TFRecords
             against files; on the synthetic set at 128x128 and at 480x640, and on the COCO
             sample when --coco-sample holds its panoptic.json.
  evaluator  our PQ from files (hotcoco engine where installed, and the numpy one)
             against hotcoco's and panopticapi's pq_compute, images per second, on
             500 images of 128x128 and 200 of 480x640 (best of --repeats).
  ops        the ops the model picks when it does not compile with XLA against their
             XLA-compilable variants, at each --sizes: RoIAlign (crop_and_resize vs
             gather, 1000 boxes, forward and forward+backward; their largest difference and
             whether crop_and_resize compiles under XLA in the note) and proposal NMS (greedy
             C++ kernel vs padded, 4000 boxes -> 1000), and the SRM on the cells its
             loss or Eq. 3 reads vs on every pixel (loss forward+backward, score map).

"speed-up" is the peer's time (or memory) over ours (above 1: we are faster, or smaller);
for images/s rows it is ours over the peer's, and for the input rows the pipeline's images
per second over the train step's. A table goes to stdout, everything (with all timings and
the machine load) to --out as JSON.

    python benchmarks/benchmark.py [--suites model coco breakdown memory synthetic precision
        input evaluator ops] [--sizes 512x512 800x1344] [--batches 1 2]
        [--modes serve infer train] [--repeats 3] [--warmup 1] [--threads N]
        [--jit config|auto|true|false] [--set SECTION.KEY=VALUE ...]
        [--coco-sample /work/shared/coco/sample]
        [--torch-python /tmp/bench-venv/bin/python | --no-torch] [--out runs/benchmark.json]
        [--precision float32 bfloat16] [--peer-precisions float32 bfloat16]

--precision sets ours in the coco and breakdown suites, one model per precision in the same
run (bfloat16: the layers compute in bfloat16, as `export --precision bfloat16` and
`train.mixed_precision: mixed_bfloat16` do);
--peer-precisions times torchvision in float32 and/or under torch.autocast(bfloat16), each
beside its own timing of ours.

A full run takes about two hours on 2 cores (the coco suite about half an hour);
`--suites synthetic input evaluator` takes minutes. The suites live in harness/ beside this
script (python puts this folder on sys.path; oanet_tf is the pip-installed package).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from harness import suites
from harness.coco import sample_images
from harness.inputs import DEFAULT_CATEGORIES, DEFAULT_COCO_SAMPLE, R50_CONFIG, parse_size
from harness.model_bench import JIT_CHOICES, MODES
from harness.report import format_rows, load_line, machine_load
from harness.torch_peer import DEFAULT_TORCH_PYTHON, TorchClient, check_torch_python
from oanet_tf.data.panoptic_format import load_categories
from oanet_tf.environment import cpu_description
from oanet_tf.errors import DatasetError

COCO_SAMPLE_ENV = "OANET_COCO_SAMPLE"  # as the tests find the sample


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", nargs="+", choices=suites.SUITES, default=list(suites.SUITES))
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=[(512, 512), (800, 1344)],
                        metavar="HxW")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                        help="of the model suite (breakdown: infer and/or train)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=R50_CONFIG)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE",
                        help="override of --config in the model, coco and breakdown suites "
                             "(repeatable)")
    parser.add_argument("--jit", choices=JIT_CHOICES, default="config",
                        help="XLA for our train step (default: the config's train.jit_compile)")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads of TensorFlow (intra- and inter-op), of torch and of the "
                             "input pipeline; 0: every core")
    parser.add_argument("--categories", default=DEFAULT_CATEGORIES,
                        help="COCO panoptic categories JSON for the R50 model (local file)")
    parser.add_argument("--coco-sample", default=os.environ.get(COCO_SAMPLE_ENV,
                                                                DEFAULT_COCO_SAMPLE),
                        help=f"a folder whose images/ holds the real COCO JPEGs of the coco "
                             f"suite (default: ${COCO_SAMPLE_ENV}, else {DEFAULT_COCO_SAMPLE})")
    parser.add_argument("--torch-python", default=DEFAULT_TORCH_PYTHON,
                        help="a Python with torch and torchvision (the peer)")
    parser.add_argument("--no-torch", action="store_true", help="time ours only")
    parser.add_argument("--precision", nargs="+", choices=suites.PRECISIONS,
                        default=["float32"],
                        help="ours in the coco suite, each beside every --peer-precisions, "
                             "and in the breakdown suite (default: float32)")
    parser.add_argument("--peer-precisions", nargs="+", choices=suites.PRECISIONS,
                        default=["float32"], help="torchvision in the coco suite")
    parser.add_argument("--out", default=os.path.join("runs", "benchmark.json"))
    return parser.parse_args(argv)


def check_inputs(args):
    """Refuse, before anything runs, what a chosen suite would fail on."""
    if set(args.suites) & set(suites.R50_SUITES):
        load_categories(args.categories)
        if not args.no_torch:
            check_torch_python(args.torch_python)
    if "coco" in args.suites:
        sample_images(args.coco_sample)


def suite_runners(args, peer, rows) -> dict:
    """{suite: function(work_dir) -> its rows} of every suite in suites.SUITES (peer: a
    TorchClient or None; rows: the rows so far, which the input suite reads)."""
    return {"model": lambda work_dir: suites.model_suite(args, peer),
            "coco": lambda work_dir: suites.coco_suite(args, peer),
            "breakdown": lambda work_dir: suites.breakdown_suite(args, peer),
            "memory": lambda work_dir: suites.memory_suite(args),
            "synthetic": lambda work_dir: suites.synthetic_suite(args, work_dir),
            "precision": lambda work_dir: suites.precision_suite(args, work_dir),
            "input": lambda work_dir: suites.input_suite(args, work_dir, rows),
            "evaluator": lambda work_dir: suites.evaluator_suite(args, work_dir),
            "ops": lambda work_dir: suites.ops_suite(args)}


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        check_inputs(args)
    except (DatasetError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    import keras
    import tensorflow as tf

    from oanet_tf.fileio import write_json

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    report = {"cpu_count": os.cpu_count(), "cpu": cpu_description(),
              "tensorflow": tf.__version__,
              "keras": keras.__version__, "load_before": machine_load(), "rows": []}
    started = time.perf_counter()
    peer = None
    if set(args.suites) & set(suites.PEER_SUITES) and not args.no_torch:
        peer = TorchClient(args.torch_python, args.threads)
        report.update(peer.request("versions"))
    print(format_rows([]), flush=True)
    run_suite = suite_runners(args, peer, report["rows"])
    try:
        with tempfile.TemporaryDirectory() as work_dir:
            for name in suites.SUITES:
                if name in args.suites:
                    report["rows"] += run_suite[name](work_dir)
                    write_json(args.out, report, indent=2)  # a later failure keeps these rows
    finally:
        if peer is not None:
            peer.close()
    report["load_after"] = machine_load()
    report["wall_seconds"] = time.perf_counter() - started
    write_json(args.out, report, indent=2)
    print()
    print(format_rows(report["rows"]))
    print(f"{load_line(report)}; {report['wall_seconds']:.0f} s; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
