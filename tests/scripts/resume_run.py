"""Train the tiny OANet on synthetic data with `oanet_tf.training.trainer.train`, recording
every step; used by the kill-and-resume and determinism tests.

    resume_run.py MODEL_DIR DATA_DIR [--hang-after BATCHES] [--save-after BATCHES]
        [--worker INDEX PORT0,PORT1]

Each finished batch appends {"batches", "iterations", "learning_rate", "loss"} to
MODEL_DIR/steps.jsonl (per worker: steps-<i>.jsonl; "loss" is Keras' running mean over the
epoch). --save-after writes the weights after that batch (before its record) to
MODEL_DIR/after-<BATCHES>[-<i>].weights.h5; --hang-after stops the run after that batch (after
its backup and record) until it is killed, so that a test kills the process at a chosen step.
At the end it prints "trained <seconds> seconds" (the run's, over every attempt).
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
parser = argparse.ArgumentParser()
parser.add_argument("model_dir")
parser.add_argument("data_dir")
parser.add_argument("--hang-after", type=int, default=0)
parser.add_argument("--save-after", type=int, default=0)
parser.add_argument("--worker", nargs=2, metavar=("INDEX", "PORTS"))
args = parser.parse_args()
if args.worker:
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"  # see make_strategy's warning
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{p}" for p in args.worker[1].split(",")]},
        "task": {"type": "worker", "index": int(args.worker[0])}})

import keras  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from tests.tiny_model import tiny_config  # noqa: E402

from oanet_tf.training.trainer import train  # noqa: E402

EPOCHS, STEPS_PER_EPOCH, BACKUP_EVERY = 2, 4, 3
RUN_SETTINGS = [
    f"data.synthetic_dir={args.data_dir}", "data.synthetic_train=16", "data.synthetic_val=4",
    "data.synthetic_size=[64, 64]", "data.short_side=64", "data.max_side=64",
    "data.max_instances=8", "data.shuffle_buffer=8", "train.batch_size=2",
    "train.reference_batch_size=2", f"train.epochs={EPOCHS}",
    f"train.steps_per_epoch={STEPS_PER_EPOCH}", f"train.backup_every_steps={BACKUP_EVERY}",
    "train.warmup_steps=2", "train.eval_every_epochs=100", "train.deterministic=true",
    "eval.min_stuff_area=16"]


class StepRecorder(keras.callbacks.Callback):
    def __init__(self, path, batches_done):
        super().__init__()
        self.path, self.batches = path, batches_done

    def on_train_begin(self, logs=None):
        if self.batches == 0:
            self.batches = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        optimizer = self.model.optimizer
        record = {"batches": self.batches, "iterations": int(optimizer.iterations.numpy()),
                  "learning_rate": float(optimizer.learning_rate.numpy()),
                  "loss": float(logs["loss"])}
        if self.batches == args.save_after:
            self.model.save_weights(os.path.join(
                args.model_dir, f"after-{self.batches}{suffix}.weights.h5"))
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        while self.batches == args.hang_after:
            time.sleep(1)


suffix = f"-{args.worker[0]}" if args.worker else ""
recorder = StepRecorder(os.path.join(args.model_dir, f"steps{suffix}.jsonl"), 0)
run = train(tiny_config(*RUN_SETTINGS), args.model_dir,
            "multi_worker" if args.worker else "one_device", verbose=0, extra_callbacks=[recorder])
print(f"trained {run.seconds} seconds")
