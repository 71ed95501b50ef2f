"""Images per second of the input pipeline: COCO files (numpy decode) vs TFRecords (TF decode).

Both sources run the same pipeline (decode, resize, flip, pad, batch; tf.data AUTOTUNE) on
`threads` cores. Cases:
  synthetic_128      the synthetic dataset at 128x128, configs/synthetic.yaml's data settings;
  coco_sample        the two real COCO images of the shared sample, repeated, with
                     configs/coco_r50.yaml's data settings (800/1333, each batch padded to
                     its largest image rounded up to 32, up to 100 instances);
  synthetic_640x480  synthetic images of 480x640 with the same coco_r50 settings.
Each case converts its split to TFRecords once (timed and sized), then times the two sources
alternately, `repeats` times each (the whole pipeline, and the decode step alone).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time

from harness.inputs import DEFAULT_COCO_SAMPLE, R50_CONFIG, SYNTHETIC_CONFIG
from harness.model_bench import resized_and_padded

CASES = ("synthetic_128", "coco_sample", "synthetic_640x480")
REAL_SIZE = (480, 640)
BYTES_PER_MB = 1e6
WARMUP_BATCHES = 2  # untimed: graph building, file cache, autotuning
BENCHMARK_SEED = 0


@dataclasses.dataclass
class InputOptions:
    """How much each case reads, and on how many cores."""

    synthetic_images: int = 64
    small_batches: int = 40  # batches timed per run at 128x128
    real_images: int = 8  # synthetic 480x640 images
    real_batch_size: int = 2
    real_batches: int = 10  # batches timed per run at real size
    num_shards: int = 4
    threads: int = 2  # cores for tf.data and TensorFlow's op thread pools
    repeats: int = 3  # timed runs per source; median kept
    coco_sample: str = DEFAULT_COCO_SAMPLE


def _on_threads(ds, threads: int):
    """The dataset on a private pool of `threads` threads, autotuned within them."""
    import tensorflow as tf

    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.autotune.cpu_budget = threads
    return ds.with_options(options)


def _rate(items, count: int, warmup: int, per_item: int = 1) -> float:
    """Elements per second over `count` items of an iterator after `warmup` untimed ones."""
    for _ in range(warmup):
        next(items)
    start = time.perf_counter()
    for _ in range(count):
        next(items)
    return count * per_item / (time.perf_counter() - start)


def measure_input(source, data_config, batch_size: int, num_batches: int,
                  threads: int = 2, warmup_batches: int = WARMUP_BATCHES) -> float:
    """Images per second of `build_dataset(source, ...)` in training mode (decode, augment,
    pad, batch) on `threads` tf.data threads, over `num_batches` batches after
    `warmup_batches` untimed ones. `source`: a PanopticDataset or a TFRecordSource."""
    from oanet_tf.data.pipeline import build_dataset

    ds = build_dataset(source, data_config, training=True, batch_size=batch_size,
                       seed=BENCHMARK_SEED)
    return _rate(iter(_on_threads(ds, threads)), num_batches, warmup_batches, batch_size)


def measure_decode(source, num_images: int, threads: int = 2,
                   warmup_images: int = WARMUP_BATCHES) -> float:
    """Images per second of the decode step alone (`load_example` in a numpy_function, or
    `parse_example`), AUTOTUNE-parallel on `threads` threads: what TFRecords change."""
    import tensorflow as tf

    members, _ = source.pipeline_share(1, 0)
    items = source.epoch_items(tf.data.Dataset.from_tensor_slices(members), None, 0)
    ds = items.repeat().map(source.decoder(), num_parallel_calls=tf.data.AUTOTUNE)
    examples = iter(_on_threads(ds.prefetch(tf.data.AUTOTUNE), threads))
    return _rate(examples, num_images, warmup_images)


def _files_megabytes(dataset) -> float:
    """Size of the image and panoptic PNG files a COCO source reads."""
    return sum(os.path.getsize(r.image_file) + os.path.getsize(r.png_file)
               for r in dataset.records) / BYTES_PER_MB


def _split_for(case: str, work_dir: str, options: InputOptions):
    """(SplitConfig, DataConfig, batch size, batches timed) of a case."""
    from oanet_tf.config import SplitConfig, load_config
    from oanet_tf.data.splits import synthetic_split
    from oanet_tf.data.synthetic import make_synthetic_dataset

    if case == "synthetic_128":
        config = load_config(SYNTHETIC_CONFIG)
        root = os.path.join(work_dir, case)
        make_synthetic_dataset(root, options.synthetic_images, 0, BENCHMARK_SEED,
                               tuple(config.data.synthetic_size))
        return (synthetic_split(root, "train"), config.data, config.train.batch_size,
                options.small_batches)
    config = load_config(R50_CONFIG)
    if case == "coco_sample":
        sample = options.coco_sample
        split = SplitConfig(image_dir=os.path.join(sample, "images"),
                            panoptic_json=os.path.join(sample, "panoptic.json"),
                            panoptic_dir=os.path.join(sample, "panoptic"),
                            instances_json=os.path.join(sample, "instances_from_panoptic.json"))
    else:
        root = os.path.join(work_dir, case)
        make_synthetic_dataset(root, options.real_images, 0, BENCHMARK_SEED, REAL_SIZE)
        split = synthetic_split(root, "train")
    return split, config.data, options.real_batch_size, options.real_batches


def run_case(case: str, work_dir: str, options: InputOptions) -> dict:
    """Convert a case's split to TFRecords in work_dir, then time both sources; the medians,
    their ratios and the sizes on disk."""
    from oanet_tf.data.coco_panoptic import PanopticDataset
    from oanet_tf.data.tfrecords import TFRecordSource, write_tfrecords

    split, data_config, batch_size, num_batches = _split_for(case, work_dir, options)
    files = PanopticDataset.from_split(split)
    record_dir = os.path.join(work_dir, case + "_tfrecords")
    started = time.perf_counter()
    write_tfrecords(files, record_dir, min(options.num_shards, len(files)),
                    progress=False, workers=options.threads)
    convert_seconds = time.perf_counter() - started
    records = TFRecordSource.from_dir(record_dir)
    rates = {"files": [], "tfrecords": [], "files_decode": [], "tfrecords_decode": []}
    for _ in range(options.repeats):  # interleaved, so drifting load hits both alike
        for name, source in (("files", files), ("tfrecords", records)):
            rates[name].append(measure_input(source, data_config, batch_size, num_batches,
                                             threads=options.threads))
            rates[name + "_decode"].append(measure_decode(source, batch_size * num_batches,
                                                          threads=options.threads))
            print(f"  {case} {name}: {rates[name][-1]:.1f} images/s, decode alone "
                  f"{rates[name + '_decode'][-1]:.1f}", flush=True)
    median = {name: statistics.median(values) for name, values in rates.items()}
    original_size = tuple(int(v) for v in files.load_example(0)["original_size"])
    return {
        "case": case, "images": len(files),
        "original_size": list(original_size),
        "short_side": data_config.short_side, "max_side": data_config.max_side,
        # The padded size of a batch of the first image's size, without jitter.
        "padded_size": list(resized_and_padded(data_config, original_size, batch_size)[1]),
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
