"""One trained model dir's val split scored in float32, in bfloat16, and in float32 on inputs
perturbed by at most half a grey level (the noise a re-encoded image carries): PQ, PQ_Th,
PQ_St and ownership accuracy per merge order, each row's difference from float32, and how far
its predictions depart from float32's (share of pixels of the same category; share of float32
segments found again at IoU >= 0.5 and 0.9). The perturbed rows say how much float32 itself
moves on an imperceptible change, the scale to read bfloat16's differences against.

    python scripts/precision_check.py --model-dir runs/demo [--noise-seeds 1 2 3]
        [--out runs/demo/precision_check.md]
"""

from __future__ import annotations

import argparse
import os
import time

import keras
import numpy as np
import tensorflow as tf

from oanet_tf.config import DETECTION, RANKING
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.data.splits import resolve_split
from oanet_tf.evaluation.agreement import prediction_agreement
from oanet_tf.evaluation.pq import GROUPS
from oanet_tf.fileio import atomic_open
from oanet_tf.inference.split_scoring import ORDER_LABELS, evaluate_model
from oanet_tf.inference.trained_model import load_config_of, load_trained_model

ORDERS = (RANKING, DETECTION)
NOISE_AMPLITUDE = 0.5  # grey levels, on the 0..255 pixels the model reads
MATCH_IOUS = (0.5, 0.9)
PERCENT = 100.0  # the table's numbers are percentages


class PerturbedInput:
    """A trained OANet whose `detect` reads its images plus seeded uniform noise."""

    def __init__(self, model, seed: int):
        self.model, self.seed = model, seed

    def __getattr__(self, name):
        return getattr(self.model, name)

    def detect(self, images, image_size=None, srm_min_score=None):
        noise = tf.random.stateless_uniform(tf.shape(images), [self.seed, 0],
                                            -NOISE_AMPLITUDE, NOISE_AMPLITUDE)
        return self.model.detect(images + noise, image_size, srm_min_score)


def score(model, config, val) -> tuple:
    """-> ({order: [PQ, PQ_Th, PQ_St, ownership]}, {image_id: {order: prediction}}, seconds)."""
    predictions = {}
    start = time.perf_counter()
    results = evaluate_model(model, val, config.data, config.eval, config.eval.batch_size,
                             orders=ORDERS, progress=False,
                             on_image=lambda s: predictions.update({s.image_id: s.predictions}))
    seconds = time.perf_counter() - start
    numbers = {order: [results[order]["pq"][group]["pq"] * PERCENT
                       for group, _ in GROUPS]
               + [results[order]["ownership"]["accuracy"] * PERCENT] for order in ORDERS}
    return numbers, predictions, seconds


def agreement(reference: dict, other: dict, order: str) -> str:
    pixels, ious = [], []
    for image_id, prediction in reference.items():
        found = prediction_agreement(prediction[order], other[image_id][order])
        pixels.append(found["pixels"])
        ious += found["segment_ious"]
    ious = np.asarray(ious)
    matched = " / ".join(f"{np.mean(ious >= t) * PERCENT:.1f}" for t in MATCH_IOUS)
    return (f"{np.mean(pixels) * PERCENT:.2f} (min {np.min(pixels) * PERCENT:.1f}) | "
            f"{matched} of {len(ious)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--weights", default="last")
    parser.add_argument("--noise-seeds", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--out", default=None,
                        help="Markdown table (default: MODEL_DIR/precision_check.md)")
    args = parser.parse_args(argv)
    rows = [("float32", "float32", None), ("bfloat16", "bfloat16", None)]
    rows += [(f"float32, input +-{NOISE_AMPLITUDE} (seed {seed})", "float32", seed)
             for seed in args.noise_seeds]
    val = PanopticDataset.from_split(resolve_split(load_config_of(args.model_dir).data, "val"))
    found = {}
    for label, precision, seed in rows:
        keras.backend.clear_session()
        trained = load_trained_model(args.model_dir, args.weights, precision=precision)
        model = trained.model if seed is None else PerturbedInput(trained.model, seed)
        found[label] = score(model, trained.config, val)
        print(f"{label}: {found[label][2]:.0f} s", flush=True)
    reference_numbers, reference_predictions, _ = found["float32"]
    lines = ["| merge | run | PQ | PQ_Th | PQ_St | ownership acc. | same-category pixels, "
             "mean % | float32 segments found at IoU >= 0.5 / 0.9, % | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for order in ORDERS:
        for label, _, _ in rows:
            numbers, predictions, seconds = found[label]
            cells = [f"{v:.2f}" if label == "float32" else
                     f"{v:.2f} ({v - r:+.2f})"
                     for v, r in zip(numbers[order], reference_numbers[order])]
            lines.append(f"| {ORDER_LABELS[order]} | {label} | {' | '.join(cells)} | "
                         f"{agreement(reference_predictions, predictions, order)} | "
                         f"{seconds:.0f} |")
    table = "\n".join(lines)
    print(table)
    out = args.out or os.path.join(args.model_dir, "precision_check.md")
    with atomic_open(out) as f:
        f.write(table + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
