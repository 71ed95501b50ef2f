"""`python -m oanet_tf demo`: the quick start, end to end on the synthetic dataset.

Makes the synthetic dataset the config reads (when it reads it and it is not there yet: the
same files as `make-synthetic` with the config's data.synthetic_* settings), trains the
synthetic config on CPU, evaluates the heuristic merge against the SRM merge (PQ and overlap
ownership), exports a SavedModel, writes overlay PNGs of a few val images, and prints where
each result is.
"""

from __future__ import annotations

import os
import time

from oanet_tf.cli.common import add_config_arguments, config_from_args
from oanet_tf.config import DETECTION, PRODUCT, RANKING
from oanet_tf.fileio import write_json

SERVING_VERSION = "1"  # TF Serving loads <export_dir>/<version>
DEMO_ORDERS = (DETECTION, RANKING, PRODUCT)  # the baseline first, as in the paper


def add_arguments(parser):
    add_config_arguments(parser)
    parser.add_argument("--model-dir", default="runs/demo",
                        help="checkpoints, TensorBoard logs, predictions (default: runs/demo)")
    parser.add_argument("--overlays", type=int, default=4,
                        help="number of val images to draw as overlay PNGs (default: 4)")


def run(args) -> int:
    started = time.time()
    config = config_from_args(args)
    from oanet_tf.data.coco_panoptic import PanopticDataset
    from oanet_tf.data.splits import resolve_split
    from oanet_tf.export.saved_model import export_saved_model
    from oanet_tf.inference.split_scoring import evaluate_model, format_comparison
    from oanet_tf.inference.visualize import write_overlays
    from oanet_tf.inference.writer import PanopticWriter
    from oanet_tf.training.trainer import train

    make_missing_synthetic(config.data)
    print(f"[1/4] training {args.config} into {args.model_dir}")
    run_result = train(config, args.model_dir, "auto")
    model = run_result.model

    print("[2/4] evaluating on the val split: heuristic merge vs SRM merge")
    val = PanopticDataset.from_split(resolve_split(config.data, "val"))
    predictions = os.path.join(args.model_dir, "predictions")
    writer = PanopticWriter(os.path.join(predictions, "panoptic_val.json"),
                            os.path.join(predictions, "panoptic_val"), val.categories)
    results = evaluate_model(model, val, config.data, config.eval, config.eval.batch_size,
                             orders=DEMO_ORDERS, writers={config.eval.merge_order: writer})
    metrics_path = os.path.join(args.model_dir, "metrics.json")
    write_json(metrics_path, results, indent=1)
    print(format_comparison(results))

    print("[3/4] exporting the SavedModel")
    export_dir = export_saved_model(model, val.categories, config.data, config.eval,
                                    os.path.join(config.export.export_dir, SERVING_VERSION),
                                    config.export.max_image_side,
                                    config.export.max_request_pixels)

    print("[4/4] drawing overlays")
    overlay_dir = os.path.join(args.model_dir, "overlays")
    written = write_overlays(val, writer.out_json, writer.out_dir, overlay_dir, args.overlays)

    print(f"\ndone in {time.time() - started:.0f} s")
    print(f"  checkpoints      {os.path.join(args.model_dir, 'checkpoints')}")
    print(f"  TensorBoard      tensorboard --logdir {os.path.join(args.model_dir, 'logs')}")
    print(f"  metrics          {metrics_path}")
    print(f"  predictions      {writer.out_json} (+ PNGs in {writer.out_dir})")
    print(f"  SavedModel       {export_dir}")
    print(f"  overlays         {overlay_dir} ({len(written)} PNGs)")
    return 0


def make_missing_synthetic(data_config) -> None:
    """Write the synthetic dataset the config reads when a split it feeds lacks its files."""
    from oanet_tf.data.splits import missing_synthetic_splits, synthetic_arguments
    from oanet_tf.data.synthetic import make_synthetic_dataset

    missing = missing_synthetic_splits(data_config)
    if missing:
        print(f"making the synthetic dataset in {data_config.synthetic_dir} (its "
              f"{' and '.join(missing)} split is missing)")
        make_synthetic_dataset(**synthetic_arguments(data_config), progress=True)
