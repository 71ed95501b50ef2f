"""Issue 27, case 2: SIGTERM (a preemptible VM's shutdown, a scheduler's kill) or SIGINT
during `train` used to end it at once (exit 143, or `error: interrupted`), losing every step
since the last backup. Now the run finishes its step, writes a backup of it, names the step
and exits with code 75; the same command resumes after that step (the second signal, which
ends the run as before, is tested in tests/training/test_stop_signals.py)."""

import re
import signal

from oanet_tf.__main__ import STOPPED
from oanet_tf.training import backup
from tests.hostile.conftest import TIMEOUT, TrainProcess
from tests.training.test_backup import launch_workers, wait_for_batch

STEPS = 20  # the run's steps; backups only at its end
SIGNAL_AFTER = 2  # steps seen done before the signal is sent


def test_sigterm_stops_after_the_step_with_a_backup_and_the_rerun_resumes_there(
        synthetic_data, tmp_path):
    model_dir = tmp_path / "model"
    run = TrainProcess(model_dir, synthetic_data, STEPS)
    run.wait_until(lambda: run.steps_done() >= SIGNAL_AFTER, f"step {SIGNAL_AFTER}")
    seen = run.steps_done()
    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == STOPPED, run.output[-3000:]
    stopped = re.search(r"stopped by SIGTERM after step (\d+): its backup is in (\S+);",
                        run.output)
    assert stopped, run.output[-3000:]
    step = int(stopped.group(1))
    # No step lost: the stop came at or after the last step shown done, before the end.
    assert seen <= step < STEPS
    assert stopped.group(2) == str(model_dir / "backup")
    assert backup.read_state(str(model_dir / "backup"))["batches"] == step

    rerun = TrainProcess(model_dir, synthetic_data, STEPS)
    assert rerun.finish() == 0, rerun.output[-3000:]
    assert (f"resuming from {model_dir / 'backup'} after step {step} (epoch 1, step {step} "
            f"of {STEPS}; optimizer step {step})") in rerun.output
    # The resumed epoch ran the remaining steps only.
    remaining = STEPS - step
    assert re.search(rf"(?<!\d){remaining}/{remaining}(?!\d)", rerun.output), rerun.output[-3000:]
    assert backup.read_state(str(model_dir / "backup"))["batches"] == STEPS


def test_sigterm_to_one_worker_stops_every_worker_after_the_same_step(synthetic_data,
                                                                     tmp_path):
    """Under MultiWorkerMirroredStrategy a worker stopping alone would leave its peer waiting
    in the next step's all-reduce: the workers agree, and each backs up the same step."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    workers = launch_workers(model_dir, synthetic_data)
    try:
        wait_for_batch(model_dir / "steps-1.jsonl", SIGNAL_AFTER, workers)
        workers[1].send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=TIMEOUT)[0] for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    causes = ("a signal to another worker", "SIGTERM")
    steps = []
    for index, output in enumerate(outputs):
        stopped = re.search(rf"stopped by {causes[index]} after step (\d+)", output)
        assert stopped, output[-3000:]
        steps.append(int(stopped.group(1)))
        state = backup.read_state(str(model_dir / "backup" / f"worker-{index}"))
        assert state["batches"] == steps[-1]
    assert steps[0] == steps[1] >= SIGNAL_AFTER
