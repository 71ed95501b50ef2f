"""Images per second of the input pipeline: COCO files (numpy decode) vs TFRecords (TF decode).

The cases, what they read and how they are timed: oanet_tf.benchmarking.input_pipeline (the
package is pip-installed). Each case converts its split to TFRecords once (timed and sized),
then times the two sources alternately, --repeats times each (the whole pipeline, and the
decode step alone), and reports the medians and their ratios. Table on stdout, JSON in --out.

    python scripts/benchmark_input.py [--cases ...] [--repeats 3] [--out runs/benchmark_input.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile

from oanet_tf.benchmarking.input_pipeline import (CASES, WARMUP_BATCHES, InputOptions,
                                                  run_case)
from oanet_tf.benchmarking.report import machine_load


def format_table(results) -> str:
    header = (f"{'case':<19}{'images':>7}{'padded':>11}{'batch':>6}{'files img/s':>13}"
              f"{'TFRecord img/s':>16}{'ratio':>7}{'decode ratio':>14}{'files MB':>10}"
              f"{'TFRec MB':>10}")
    lines = [header]
    for r in results:
        padded = "x".join(str(v) for v in r["padded_size"])
        lines.append(f"{r['case']:<19}{r['images']:>7}{padded:>11}{r['batch_size']:>6}"
                     f"{r['files_images_per_second']:>13.1f}"
                     f"{r['tfrecords_images_per_second']:>16.1f}{r['speedup']:>7.2f}"
                     f"{r['decode_speedup']:>14.2f}"
                     f"{r['coco_files_mb']:>10.2f}{r['tfrecords_mb']:>10.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    defaults = InputOptions()
    parser.add_argument("--repeats", type=int, default=defaults.repeats,
                        help="timed runs per source; median")
    parser.add_argument("--threads", type=int, default=defaults.threads,
                        help="cores for tf.data and TensorFlow's op thread pools")
    parser.add_argument("--synthetic-images", type=int, default=defaults.synthetic_images)
    parser.add_argument("--small-batches", type=int, default=defaults.small_batches,
                        help="batches timed per run at 128x128")
    parser.add_argument("--real-images", type=int, default=defaults.real_images,
                        help="synthetic 480x640 images")
    parser.add_argument("--real-batch-size", type=int, default=defaults.real_batch_size)
    parser.add_argument("--real-batches", type=int, default=defaults.real_batches,
                        help="batches timed per run at real size")
    parser.add_argument("--num-shards", type=int, default=defaults.num_shards)
    parser.add_argument("--coco-sample", default=os.environ.get("OANET_COCO_SAMPLE",
                                                                defaults.coco_sample))
    parser.add_argument("--work-dir", default="",
                        help="where datasets and records go (default: a temporary folder)")
    parser.add_argument("--out", default=os.path.join("runs", "benchmark_input.json"))
    args = parser.parse_args(argv)
    if "coco_sample" in args.cases and not os.path.isfile(
            os.path.join(args.coco_sample, "panoptic.json")):
        print(f"error: no COCO sample in {args.coco_sample} (--coco-sample); or leave the "
              f"coco_sample case out", file=sys.stderr)
        return 2

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from oanet_tf.fileio import write_json

    options = InputOptions(**{field.name: getattr(args, field.name)
                              for field in dataclasses.fields(InputOptions)})
    with tempfile.TemporaryDirectory() as scratch:
        work_dir = args.work_dir or scratch
        results = [run_case(case, work_dir, options) for case in args.cases]
    report = {"threads": args.threads, "cpu_count": os.cpu_count(), "repeats": args.repeats,
              "warmup_batches": WARMUP_BATCHES, "python": platform.python_version(),
              "tensorflow": tf.__version__, "load_1min": machine_load()["load_1min"],
              "cases": results}
    print()
    print(format_table(results))
    print(f"medians of {args.repeats} interleaved runs; {args.threads} threads; ratio = "
          f"TFRecords / files for the whole pipeline, decode ratio for the decode step alone; "
          f"report: {args.out}")
    write_json(args.out, report, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
