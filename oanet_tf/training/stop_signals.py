"""SIGTERM and SIGINT during training: stop after the current step, with a backup of it.

A preemptible VM's shutdown or a job scheduler sends SIGTERM, Ctrl-C sends SIGINT; either
used to end the run with every step since the last backup lost. While a `StopRequest` is
active, the first of them is only recorded (and told on stderr), and the handlers in place
before come back, so that a second one ends the process as it would have. `StopAtSignal`,
placed after the backup callback, sees the request at the end of the step (or epoch), writes
the backup of that step, and raises `TrainingStopped`. Keras' `model.stop_training` is not
used: fit would still run the epoch's validation and every epoch-end callback (on COCO a PQ
evaluation of minutes), past a preemption's grace period, and log a partial epoch as whole.
Under MultiWorkerMirroredStrategy the workers all-reduce the request after every step, so
that all stop after the same one (a worker stopping alone would leave the others waiting in
the next step's all-reduce) and each writes its backup of it.
"""

from __future__ import annotations

import os
import signal
import threading

import keras
import tensorflow as tf

from oanet_tf.errors import TrainingStopped
from oanet_tf.training.backup import TrainingBackup
from oanet_tf.training.strategy import worker_index

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """A context that catches the first SIGTERM or SIGINT (in the main thread; elsewhere
    signals cannot be caught and nothing changes); `signal_name` is then its name."""

    def __init__(self):
        self.signal_name = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.signal(number, self._receive)
                              for number in STOP_SIGNALS}
        return self

    def __exit__(self, *exc_info):
        self._restore()

    def _receive(self, number, frame):
        self.signal_name = signal.Signals(number).name
        self._restore()
        # os.write, not print: the handler may interrupt a print to the same stream.
        os.write(2, f"\n{self.signal_name}: stopping after the current step, once its backup "
                    f"is written; send it again to stop at once\n".encode())

    def _restore(self):
        for number, handler in self._previous.items():
            # None: a handler installed outside Python, which the default stands for.
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        self._previous = {}


class StopAtSignal(keras.callbacks.Callback):
    """After each step and epoch: if `request` caught a signal (on any worker), write
    `backup`'s backup of this step and raise TrainingStopped."""

    def __init__(self, request: StopRequest, backup: TrainingBackup,
                 strategy: tf.distribute.Strategy):
        super().__init__()
        self.request = request
        self.backup = backup
        self._any_worker = _any_worker(strategy) if worker_index(strategy) is not None else bool

    def on_train_batch_end(self, batch, logs=None):
        self._stop_if_requested()

    def on_epoch_end(self, epoch, logs=None):
        self._stop_if_requested()

    def _stop_if_requested(self):
        if not self._any_worker(self.request.signal_name is not None):
            return
        self.backup.save()
        step = self.backup.batches_done
        cause = self.request.signal_name or "a signal to another worker"
        raise TrainingStopped(f"stopped by {cause} after step {step}: its backup is in "
                              f"{self.backup.backup_dir}; the same command resumes there", step)


def _any_worker(strategy: tf.distribute.Strategy):
    """flag -> whether it is true on any replica of the cluster (an all-reduce: every worker
    must call it at the same point)."""

    @tf.function
    def count(flag):
        # tf.identity: a tensor of the replica's device (all_reduce sends to the value's).
        return strategy.run(lambda value: tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, tf.identity(value)), args=(flag,))

    def any_worker(flag: bool) -> bool:
        total = strategy.experimental_local_results(count(tf.constant(float(flag))))[0]
        return float(total) > 0
    return any_worker
