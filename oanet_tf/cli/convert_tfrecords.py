"""`python -m oanet_tf convert-tfrecords`: one split of a COCO panoptic dataset as sharded
TFRecords (oanet_tf.data.tfrecords).

The split comes from a config (its data.train / data.val paths, or the synthetic dataset when
none are set) or from explicit paths. Point data.<split>.tfrecord_dir at the output folder to
train from the records.
"""

from __future__ import annotations

import os
import sys
import time

from oanet_tf.config import SplitConfig, load_config
from oanet_tf.data.splits import SPLITS, resolve_split
from oanet_tf.errors import OANetError

BYTES_PER_MB = 1e6
FAILED = 1  # exit status of a conversion stopped by a bad input


def add_arguments(parser):
    source = parser.add_argument_group("the split, from a config")
    source.add_argument("--config", default="",
                        help="a shipped config's name (e.g. coco_r50) or a YAML file")
    source.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE", help="config override (repeatable)")
    source.add_argument("--split", choices=SPLITS, default="train")
    paths = parser.add_argument_group("or from explicit paths")
    paths.add_argument("--image-dir", default="")
    paths.add_argument("--panoptic-json", default="")
    paths.add_argument("--panoptic-dir", default="")
    paths.add_argument("--instances-json", default="",
                       help="COCO instances JSON (overlapping masks); empty: masks from the "
                            "panoptic PNGs")
    paths.add_argument("--skip-bad-images", action="store_true",
                       help="leave bad images out (listed in the manifest) instead of stopping "
                            "(with --config: data.skip_bad_images)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--num-shards", type=int, required=True,
                        help="shard files; at least the number of input pipelines (workers) "
                             "that will read them, since they are shared out by file")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="threads decoding images (default: every core)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def usage_problem(args) -> str:
    """What is wrong with the arguments as a whole, or ''."""
    explicit = [args.image_dir, args.panoptic_json, args.panoptic_dir]
    if args.config and any(explicit + [args.instances_json]):
        return "give either --config or explicit paths, not both"
    if not args.config and not all(explicit):
        return "give --config, or all of --image-dir, --panoptic-json and --panoptic-dir"
    if args.num_shards < 1:
        return "--num-shards must be at least 1"
    if args.workers < 1:
        return "--workers must be at least 1"
    return ""


def convert(args) -> dict:
    """Open the split, write the shards and the manifest; returns a summary."""
    from oanet_tf.data.coco_panoptic import PanopticDataset
    from oanet_tf.data.tfrecords import write_tfrecords

    if args.config:
        data_config = load_config(args.config, args.overrides).data
        split = resolve_split(data_config, args.split)
        skip_bad_images = data_config.skip_bad_images or args.skip_bad_images
    else:
        split = SplitConfig(image_dir=args.image_dir, panoptic_json=args.panoptic_json,
                            panoptic_dir=args.panoptic_dir, instances_json=args.instances_json)
        skip_bad_images = args.skip_bad_images
    started = time.perf_counter()
    dataset = PanopticDataset.from_split(split, skip_bad_images=skip_bad_images)
    manifest = write_tfrecords(dataset, args.out, args.num_shards,
                               progress=not args.no_progress, split=args.split,
                               workers=args.workers)
    dataset.report_bad_images()
    return {"images": manifest["count"], "skipped": len(manifest["skipped"]),
            "shards": len(manifest["shards"]),
            "megabytes": sum(s["bytes"] for s in manifest["shards"]) / BYTES_PER_MB,
            "seconds": time.perf_counter() - started, "out": args.out}


def run(args) -> int:
    problem = usage_problem(args)
    if problem:
        raise OANetError(problem)
    try:
        summary = convert(args)
    except (OANetError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return FAILED
    print(f"{summary['images']} images ({summary['skipped']} skipped) in {summary['shards']} "
          f"shards, {summary['megabytes']:.1f} MB, {summary['seconds']:.1f} s -> "
          f"{summary['out']}")
    return 0

