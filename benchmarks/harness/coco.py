"""The coco suite: our R50 (configs/coco_r50.yaml, random weights) against torchvision's
maskrcnn_resnet50_fpn on COCO's own image sizes, each image resized as the config says and a
batch padded to its own size (image_sizes.padded_size), as training and serving now do:

  end to end  the real COCO JPEGs of the sample (its images/ folder: 640x427 and 640x360),
              encoded bytes through the export's serving function, against torchvision with
              its default transform (short side 800, long side at most 1333) on the decoded
              images; each image at batch 1, then both at batch 2 (seconds per batch);
  train step  batch TRAIN_BATCH of landscape 640x480 images (-> 800x1067, padded 800x1088),
              then of portrait 480x640 ones, with random instances; the peer trains on the
              same resized images and instances (images per second).

benchmark.py --suites memory measures the peak memory of the same train steps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from harness.model_bench import OursBench, resized_and_padded
from harness.report import format_rows, row
from harness.timing import interleaved, median

SUITE = "coco"
# (height, width) of the train step's images as read from the files: a landscape and a
# portrait 640x480 photograph (COCO's most common size), one batch of each orientation as
# the training pipeline groups them.
TRAIN_ORIGINALS = ((480, 640), (640, 480))
TRAIN_BATCH = 2
JPEG_SUFFIXES = (".jpg", ".jpeg")
UNUSED_SIZE = (0, 0)  # the peer's serve_files reads its sizes from the files


@dataclass(frozen=True)
class TrainCase:
    """One train-step batch: the files' size, the resized size, the batch's padded size."""
    original: tuple
    resized: tuple
    padded: tuple

    @property
    def name(self) -> str:
        return "landscape" if self.original[1] > self.original[0] else "portrait"


def train_cases(data_config, originals=TRAIN_ORIGINALS, batch=TRAIN_BATCH) -> list:
    """The TrainCase of each original size: resized as the config says (no jitter), padded
    for a batch of `batch` such images."""
    return [TrainCase(tuple(original), *resized_and_padded(data_config, original, batch))
            for original in originals]


def sample_images(sample_dir: str) -> list:
    """The JPEG files of a COCO sample folder (its images/ subfolder), sorted by name."""
    folder = os.path.join(sample_dir, "images")
    files = sorted(os.path.join(folder, name) for name in os.listdir(folder)
                   if name.lower().endswith(JPEG_SUFFIXES)) if os.path.isdir(folder) else []
    if not files:
        raise FileNotFoundError(f"no JPEG images in {folder}: the coco suite serves the real "
                                f"COCO sample (pass --coco-sample)")
    return files


def serve_batches(files: list) -> list:
    """The end-to-end cases: each file alone, then all of them in one batch."""
    return [[path] for path in files] + ([list(files)] if len(files) > 1 else [])


def coco_rows(bench: OursBench, peer, files, args, instances,
              peer_precisions=("float32",)) -> list:
    """The suite's rows (bench: our R50 without a default size, in bench.precision; peer: a
    TorchClient or None, timed in each of `peer_precisions`, float32 or bfloat16 autocast,
    each beside its own timing of ours). args: seed, warmup, repeats."""
    rows = []
    inputs = bench.image_inputs()
    num_things = bench.categories.num_things
    ours_label = f"ours {bench.precision}"
    for batch_files in serve_batches(files):
        encoded = []
        for path in batch_files:
            with open(path, "rb") as f:
                encoded.append(f.read())
        pixels, _, original_size = inputs.from_encoded(encoded)
        bench.prepare_serve(encoded)
        sizes = ", ".join(f"{os.path.basename(p)} {w}x{h}" for p, (h, w) in
                          zip(batch_files, original_size.numpy().tolist()))
        for precision in (peer_precisions if peer is not None else (None,)):
            peer_time = None
            if precision is not None:
                peer.prepare("serve_files", UNUSED_SIZE, len(batch_files), args.seed, 0,
                             num_things, files=batch_files, precision=precision)
                peer_time = peer.time
            ours, theirs = interleaved(bench.call, peer_time, args.warmup, args.repeats)
            ours_s, theirs_s = median(ours), (median(theirs) if theirs else None)
            rows.append(row(SUITE, "end-to-end (COCO JPEGs)", tuple(pixels.shape[1:3]),
                            len(batch_files), "s/batch", ours_s, theirs_s,
                            _peer_name(precision), theirs_s / ours_s if theirs else None,
                            note=f"{ours_label}; padded input; {sizes} (WxH)"))
            print(format_rows(rows[-1:], header=False), flush=True)
    for case in train_cases(bench.config.data):
        data = bench.train_batch(TRAIN_BATCH, args.seed, instances, case.resized, case.padded,
                                 case.original)
        bench.prepare_train(data)
        original, resized = case.original, case.resized
        for precision in (peer_precisions if peer is not None else (None,)):
            peer_time = None
            if precision is not None:
                peer.prepare("train", case.resized, TRAIN_BATCH, args.seed, instances,
                             num_things, precision=precision)
                peer_time = peer.time
            ours, theirs = interleaved(bench.call, peer_time, args.warmup, args.repeats)
            ours_rate = TRAIN_BATCH / median(ours)
            theirs_rate = TRAIN_BATCH / median(theirs) if theirs else None
            rows.append(row(SUITE, f"train step ({case.name})", case.padded, TRAIN_BATCH,
                            "images/s", ours_rate, theirs_rate, _peer_name(precision),
                            ours_rate / theirs_rate if theirs else None,
                            note=f"{ours_label}; padded input; {original[1]}x{original[0]} "
                                 f"resized to {resized[1]}x{resized[0]} (WxH), "
                                 f"{instances} instances"))
            print(format_rows(rows[-1:], header=False), flush=True)
    return rows


def _peer_name(precision) -> str:
    """torchvision, with ' bfloat16 autocast' when it runs so; '' without a peer."""
    if precision is None:
        return ""
    return "torchvision" + (" bfloat16 autocast" if precision == "bfloat16" else "")
