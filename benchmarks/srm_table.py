"""The paper's Tables 3 and 5 in miniature, from one trained model dir.

Table 3: the same detections merged by detection score (the heuristic baseline), by the SRM
ranking score (OANet) and by their product: PQ, PQ_Th, PQ_St and overlap ownership accuracy.
Table 5: the SRM kernel (1x1, 3x3, 1xk+kx1). The SRM reads ground-truth instance masks during
training and its loss reaches no other weight, so swapping the kernel only needs the SRM
retrained, on the same training split for the same number of steps, while every other weight
stays the one of the trained model.

    python benchmarks/srm_table.py --model-dir runs/demo
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import keras
import tensorflow as tf

from oanet_tf.config import SRM_KERNELS
from oanet_tf.data.coco_panoptic import PanopticDataset
from oanet_tf.data.pipeline import build_dataset
from oanet_tf.data.splits import resolve_split
from oanet_tf.fileio import atomic_open, write_json
from oanet_tf.inference.split_scoring import ORDER_LABELS, evaluate_model
from oanet_tf.modeling.builder import build_oanet
from oanet_tf.inference.trained_model import load_trained_model
from oanet_tf.training.schedule import build_optimizer

SHARED_COMPONENTS = ("backbone", "fpn", "rpn", "roi_heads", "stuff_branch", "stuff_backbone",
                     "stuff_fpn")


def train_srm_alone(model, config, train_split, steps: int) -> float:
    """Train only `model.srm` with the SRM loss on ground-truth masks; returns the last loss."""
    data = build_dataset(PanopticDataset.from_split(train_split), config.data, training=True,
                         batch_size=config.train.batch_size, seed=config.train.seed)
    optimizer = build_optimizer(config.train)
    variables = model.srm.trainable_variables

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            loss = model.srm.loss(batch["gt_masks"], tf.cast(batch["gt_classes"], tf.int32),
                                  batch["owner"])
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    loss = 0.0
    for batch in data.take(steps):
        loss = float(step(batch))
    return loss


def with_kernel(trained, kernel: str):
    """A copy of the trained model whose SRM uses `kernel` (fresh SRM weights)."""
    config = trained.config
    model_config = dataclasses.replace(config.model,
                                       srm=dataclasses.replace(config.model.srm, kernel=kernel))
    keras.utils.set_random_seed(config.train.seed)
    model = build_oanet(model_config, config.train, trained.categories,
                        load_backbone_weights=False)
    for name in SHARED_COMPONENTS:
        source = getattr(trained.model, name)
        if source is not None:
            getattr(model, name).set_weights(source.get_weights())
    return model


def markdown(rows) -> str:
    lines = ["| model | merge order | SRM kernel | PQ | PQ_Th | PQ_St | ownership acc. |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        pq, own = row["result"]["pq"], row["result"]["ownership"]["accuracy"]
        lines.append(f"| {row['model']} | {ORDER_LABELS[row['order']]} | {row['kernel']} | "
                     f"{100 * pq['All']['pq']:.1f} | {100 * pq['Things']['pq']:.1f} | "
                     f"{100 * pq['Stuff']['pq']:.1f} | {100 * own:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--weights", default="last")
    parser.add_argument("--srm-steps", type=int, default=0,
                        help="steps to retrain each SRM variant (default: the model's "
                             "train.epochs * train.steps_per_epoch)")
    args = parser.parse_args(argv)
    started = time.time()
    trained = load_trained_model(args.model_dir, args.weights)
    config = trained.config
    val = PanopticDataset.from_split(resolve_split(config.data, "val"))
    steps = args.srm_steps or config.train.epochs * config.train.steps_per_epoch
    batch = config.eval.batch_size

    rows = []
    joint = evaluate_model(trained.model, val, config.data, config.eval, batch,
                           orders=("detection", "ranking", "product"), progress=False)
    for order, result in joint.items():
        rows.append({"model": "trained end to end", "order": order,
                     "kernel": config.model.srm.kernel if order != "detection" else "-",
                     "result": result})
    for kernel in SRM_KERNELS:
        model = with_kernel(trained, kernel)
        loss = train_srm_alone(model, config, resolve_split(config.data, "train"), steps)
        result = evaluate_model(model, val, config.data, config.eval, batch,
                                orders=("ranking",), progress=False)["ranking"]
        rows.append({"model": f"SRM retrained alone ({steps} steps, final loss {loss:.3f})",
                     "order": "ranking", "kernel": kernel, "result": result})
        print(markdown(rows[-1:]).splitlines()[-1], flush=True)

    table = markdown(rows)
    print(table)
    with atomic_open(os.path.join(args.model_dir, "srm_table.md")) as f:
        f.write(table + "\n")
    write_json(os.path.join(args.model_dir, "srm_table.json"), rows, indent=1)
    print(f"written to {args.model_dir}/srm_table.md and .json in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
