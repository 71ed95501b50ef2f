"""`python -m oanet_tf pq`: Panoptic Quality of COCO panoptic predictions (no TensorFlow)."""

from __future__ import annotations

import argparse

from oanet_tf.evaluation.pq import (AUTO, ENGINES, evaluate_files, format_per_class_table,
                                    format_pq_table, load_panoptic_json)
from oanet_tf.fileio import write_json


def _workers(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (all cores) or positive, got {value}")
    return value


def add_arguments(parser):
    parser.add_argument("--gt-json", required=True, help="ground-truth COCO panoptic JSON")
    parser.add_argument("--gt-dir", required=True, help="folder of the ground-truth PNGs")
    parser.add_argument("--pred-json", required=True, help="predicted COCO panoptic JSON")
    parser.add_argument("--pred-dir", required=True, help="folder of the predicted PNGs")
    parser.add_argument("--out", default="", help="write the metrics here as JSON")
    parser.add_argument("--engine", choices=ENGINES, default=AUTO,
                        help="hotcoco (Rust, faster) or numpy; auto: hotcoco where installed")
    parser.add_argument("--workers", type=_workers, default=0,
                        help="processes of the numpy engine (default: all cores)")
    parser.add_argument("--allow-outside-paths", action="store_true",
                        help="let the JSONs' file names lead out of --gt-dir / --pred-dir "
                             "(absolute paths, '..', symlinks out)")
    parser.add_argument("--per-class", action="store_true",
                        help="also print PQ / SQ / RQ and TP / FP / FN of every category")


def run(args) -> int:
    result = evaluate_files(args.gt_json, args.gt_dir, args.pred_json, args.pred_dir,
                            workers=args.workers or None, engine=args.engine,
                            allow_outside_paths=args.allow_outside_paths)
    print(f"PQ from {result['engine']}")
    print(format_pq_table(result))
    if args.per_class:
        categories = load_panoptic_json(args.gt_json, "ground-truth JSON")["categories"]
        print()
        print(format_per_class_table(result, categories))
    if args.out:
        write_json(args.out, result, indent=2)
        print(f"metrics written to {args.out}")
    return 0
