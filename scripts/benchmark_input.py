"""Images per second of the input pipeline: COCO files (numpy decode) vs TFRecords (TF decode).

Both sources run the same pipeline (decode, resize, flip, pad, batch; tf.data AUTOTUNE) on
--threads cores. Cases:
  synthetic_128      the synthetic dataset at 128x128, configs/synthetic.yaml's data settings;
  coco_sample        the two real COCO images of the shared sample, repeated, with
                     configs/coco_r50.yaml's data settings (800/1333, padded 1344x1344,
                     100 instances);
  synthetic_640x480  synthetic images of 480x640 with the same coco_r50 settings.
Each case converts its split to TFRecords once (timed and sized), then times the two sources
alternately, --repeats times each (the whole pipeline, and the decode step alone), and
reports the medians and their ratios. Table on stdout, JSON in --out.

    python scripts/benchmark_input.py [--cases ...] [--repeats 3] [--out runs/benchmark_input.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNTHETIC_CONFIG = os.path.join(REPO_ROOT, "configs", "synthetic.yaml")
COCO_CONFIG = os.path.join(REPO_ROOT, "configs", "coco_r50.yaml")
DEFAULT_SAMPLE = "/work/shared/coco/sample"
CASES = ("synthetic_128", "coco_sample", "synthetic_640x480")
REAL_SIZE = (480, 640)
BYTES_PER_MB = 1e6
WARMUP_BATCHES = 2  # untimed: graph building, file cache, autotuning
BENCHMARK_SEED = 0


def measure_input(source, data_config, batch_size: int, num_batches: int,
                  threads: int = 2, warmup_batches: int = WARMUP_BATCHES) -> float:
    """Images per second of `build_dataset(source, ...)` in training mode (decode, augment,
    pad, batch) on `threads` tf.data threads, over `num_batches` batches after
    `warmup_batches` untimed ones. `source`: a PanopticDataset or a TFRecordSource."""
    import tensorflow as tf

    from oanet_tf.data.pipeline import build_dataset

    ds = build_dataset(source, data_config, training=True, batch_size=batch_size,
                       seed=BENCHMARK_SEED)
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.autotune.cpu_budget = threads
    batches = iter(ds.with_options(options))
    for _ in range(warmup_batches):
        next(batches)
    start = time.perf_counter()
    for _ in range(num_batches):
        next(batches)
    return num_batches * batch_size / (time.perf_counter() - start)


def measure_decode(source, num_images: int, threads: int = 2,
                   warmup_images: int = WARMUP_BATCHES) -> float:
    """Images per second of the decode step alone (`load_example` in a numpy_function, or
    `parse_example`), AUTOTUNE-parallel on `threads` threads: what TFRecords change."""
    import tensorflow as tf

    from oanet_tf.data.pipeline import index_decoder
    from oanet_tf.data.tfrecords import READ_BUFFER_BYTES, TFRecordSource, parse_example

    if isinstance(source, TFRecordSource):
        ds = tf.data.TFRecordDataset(source.files, buffer_size=READ_BUFFER_BYTES).repeat()
        ds = ds.map(parse_example, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = tf.data.Dataset.range(len(source)).repeat()
        ds = ds.map(index_decoder(source), num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.autotune.cpu_budget = threads
    examples = iter(ds.prefetch(tf.data.AUTOTUNE).with_options(options))
    for _ in range(warmup_images):
        next(examples)
    start = time.perf_counter()
    for _ in range(num_images):
        next(examples)
    return num_images / (time.perf_counter() - start)


def _files_megabytes(dataset) -> float:
    """Size of the image and panoptic PNG files a COCO source reads."""
    return sum(os.path.getsize(r.image_file) + os.path.getsize(r.png_file)
               for r in dataset.records) / BYTES_PER_MB


def _split_for(case: str, work_dir: str, args):
    """(SplitConfig, DataConfig, batch size, batches timed) of a case."""
    from oanet_tf.config import SplitConfig, load_config
    from oanet_tf.data.splits import synthetic_split
    from oanet_tf.data.synthetic import make_synthetic_dataset

    if case == "synthetic_128":
        config = load_config(SYNTHETIC_CONFIG)
        root = os.path.join(work_dir, case)
        make_synthetic_dataset(root, args.synthetic_images, 0, BENCHMARK_SEED,
                               tuple(config.data.synthetic_size))
        return (synthetic_split(root, "train"), config.data, config.train.batch_size,
                args.small_batches)
    config = load_config(COCO_CONFIG)
    if case == "coco_sample":
        sample = args.coco_sample
        split = SplitConfig(image_dir=os.path.join(sample, "images"),
                            panoptic_json=os.path.join(sample, "panoptic.json"),
                            panoptic_dir=os.path.join(sample, "panoptic"),
                            instances_json=os.path.join(sample, "instances_from_panoptic.json"))
    else:
        root = os.path.join(work_dir, case)
        make_synthetic_dataset(root, args.real_images, 0, BENCHMARK_SEED, REAL_SIZE)
        split = synthetic_split(root, "train")
    return split, config.data, args.real_batch_size, args.real_batches


def run_case(case: str, work_dir: str, args) -> dict:
    from oanet_tf.data.coco_panoptic import PanopticDataset
    from oanet_tf.data.tfrecords import TFRecordSource, write_tfrecords

    split, data_config, batch_size, num_batches = _split_for(case, work_dir, args)
    files = PanopticDataset.from_split(split)
    record_dir = os.path.join(work_dir, case + "_tfrecords")
    started = time.perf_counter()
    write_tfrecords(files, record_dir, min(args.num_shards, len(files)),
                    progress=False, workers=args.threads)
    convert_seconds = time.perf_counter() - started
    records = TFRecordSource.from_dir(record_dir)
    rates = {"files": [], "tfrecords": [], "files_decode": [], "tfrecords_decode": []}
    for _ in range(args.repeats):  # interleaved, so drifting load hits both alike
        for name, source in (("files", files), ("tfrecords", records)):
            rates[name].append(measure_input(source, data_config, batch_size, num_batches,
                                             threads=args.threads))
            rates[name + "_decode"].append(measure_decode(source, batch_size * num_batches,
                                                          threads=args.threads))
            print(f"  {case} {name}: {rates[name][-1]:.1f} images/s, decode alone "
                  f"{rates[name + '_decode'][-1]:.1f}", flush=True)
    median = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "case": case, "images": len(files),
        "original_size": [int(v) for v in files.load_example(0)["original_size"]],
        "short_side": data_config.short_side, "max_side": data_config.max_side,
        "padded_size": list(data_config.padded_size),
        "max_instances": data_config.max_instances, "batch_size": batch_size,
        "batches_timed": num_batches,
        "files_images_per_second": median["files"],
        "tfrecords_images_per_second": median["tfrecords"],
        "speedup": median["tfrecords"] / median["files"],
        "files_decode_images_per_second": median["files_decode"],
        "tfrecords_decode_images_per_second": median["tfrecords_decode"],
        "decode_speedup": median["tfrecords_decode"] / median["files_decode"],
        "all_rates": rates,
        "coco_files_mb": _files_megabytes(files),
        "tfrecords_mb": sum(os.path.getsize(f) for f in records.files) / BYTES_PER_MB,
        "convert_seconds": convert_seconds,
    }


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
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per source; median")
    parser.add_argument("--threads", type=int, default=2,
                        help="cores for tf.data and TensorFlow's op thread pools")
    parser.add_argument("--synthetic-images", type=int, default=64)
    parser.add_argument("--small-batches", type=int, default=40,
                        help="batches timed per run at 128x128")
    parser.add_argument("--real-images", type=int, default=8,
                        help="synthetic 480x640 images")
    parser.add_argument("--real-batch-size", type=int, default=2)
    parser.add_argument("--real-batches", type=int, default=10,
                        help="batches timed per run at real size")
    parser.add_argument("--num-shards", type=int, default=4)
    parser.add_argument("--coco-sample", default=os.environ.get("OANET_COCO_SAMPLE",
                                                                DEFAULT_SAMPLE))
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

    with tempfile.TemporaryDirectory() as scratch:
        work_dir = args.work_dir or scratch
        results = [run_case(case, work_dir, args) for case in args.cases]
    report = {"threads": args.threads, "cpu_count": os.cpu_count(), "repeats": args.repeats,
              "warmup_batches": WARMUP_BATCHES, "python": platform.python_version(),
              "tensorflow": tf.__version__, "load_1min": os.getloadavg()[0],
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
