"""`python -m oanet_tf evaluate`: predict a COCO-format split with a trained model dir and
report PQ (streamed during prediction, and from the written files), ownership accuracy,
detection quality and the instance branch's COCO box and mask AP."""

from __future__ import annotations

import os

from oanet_tf.cli.common import add_precision_argument, print_precision
from oanet_tf.config import MERGE_ORDERS
from oanet_tf.errors import OANetError
from oanet_tf.fileio import write_json


def add_arguments(parser):
    parser.add_argument("--model-dir", required=True, help="a directory written by `train`")
    parser.add_argument("--weights", default="last", help="last, best, or a weights file")
    parser.add_argument("--split", default="val", choices=("train", "val"),
                        help="which split of the config's data to evaluate (default: val)")
    parser.add_argument("--orders", nargs="+", default=None, choices=MERGE_ORDERS,
                        help="merge orders to compare (default: the config's eval.merge_order)")
    parser.add_argument("--out", default=None,
                        help="where predictions and metrics go (default: MODEL_DIR/eval_SPLIT)")
    parser.add_argument("--config", default=None, help="config (default: MODEL_DIR/config.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE", help="override one config value")
    add_precision_argument(parser)


def run(args) -> int:
    from oanet_tf.data.coco_panoptic import PanopticDataset
    from oanet_tf.data.splits import resolve_split
    from oanet_tf.environment import describe_environment
    from oanet_tf.evaluation.pq import evaluate_files, format_pq_table
    from oanet_tf.evaluation.coco_ap import CocoAP
    from oanet_tf.evaluation.detection import DetectionQuality
    from oanet_tf.inference.split_scoring import evaluate_model, format_comparison
    from oanet_tf.inference.writer import PanopticWriter
    from oanet_tf.inference.trained_model import load_trained_model

    trained = load_trained_model(args.model_dir, args.weights, args.config, args.overrides,
                                 args.precision)
    print_precision(trained)
    config = trained.config
    split = resolve_split(config.data, args.split)
    dataset = PanopticDataset.from_split(split, skip_bad_images=config.data.skip_bad_images)
    if dataset.categories.semantic_ids != trained.categories.semantic_ids:
        raise OANetError(f"{split.panoptic_json}: its categories {dataset.categories.semantic_ids} "
                         f"differ from the model's {trained.categories.semantic_ids} "
                         f"({args.model_dir}/categories.json)")
    orders = tuple(args.orders or (config.eval.merge_order,))
    out = args.out or os.path.join(args.model_dir, f"eval_{args.split}")
    writers = {order: PanopticWriter(os.path.join(out, f"panoptic_{order}.json"),
                                     os.path.join(out, f"panoptic_{order}"), dataset.categories)
               for order in orders}
    detection_quality = DetectionQuality(trained.model.test_score_threshold)
    coco_ap = CocoAP([c for c in dataset.categories.categories if c["isthing"]])
    results = evaluate_model(trained.model, dataset, config.data, config.eval,
                             config.eval.batch_size, orders=orders, writers=writers,
                             detection_quality=detection_quality, coco_ap=coco_ap)
    for order in orders:
        print(f"\nmerge order {order}: PQ from oanet_tf")
        print(format_pq_table(results[order]["pq"]))
        if not config.eval.max_images:
            from_files = evaluate_files(split.panoptic_json, split.panoptic_dir,
                                        writers[order].out_json, writers[order].out_dir,
                                        progress=False)
            print(f"merge order {order}: PQ from the written files ({from_files['engine']})")
            print(format_pq_table(from_files))
            results[order]["pq_files"] = {k: from_files[k] for k in ("All", "Things", "Stuff",
                                                                     "engine")}
    results["detection_quality"] = detection_quality.result()
    results["coco_ap"] = coco_ap.result()
    print()
    print(format_comparison({o: results[o] for o in orders}))
    print(f"detections: {results['detection_quality']}")
    print(_format_ap(results["coco_ap"]))
    results["environment"] = describe_environment()  # what computed these numbers
    results["precision"] = trained.precision.as_dict()
    metrics = os.path.join(out, "metrics.json")
    write_json(metrics, results, indent=1)
    print(f"predictions and {metrics} written to {out}")
    return 0


def _format_ap(result: dict) -> str:
    """The COCO AP lines of the instance branch, in percent."""
    lines = [f"instance branch COCO AP ({result['engine']}):"]
    for iou_type, label in (("bbox", "box "), ("segm", "mask")):
        lines.append(f"  {label} " + " ".join(f"{name} {100 * value:5.1f}"
                                              for name, value in result[iou_type].items()))
    return "\n".join(lines)
