"""A run killed with SIGKILL mid-epoch (one process, or one worker of two) resumes from its
last backup with the same step, optimizer state and learning rate, and ends with the weights
of an uninterrupted run; two runs with op determinism on and one seed are identical."""

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from oanet_tf.data.synthetic import make_synthetic_dataset
from oanet_tf.training import backup
from oanet_tf.training.model_dir import LAST_WEIGHTS
from tests.test_multi_worker import free_ports

SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "resume_run.py")
TIMEOUT = 600
KILL_AFTER = 7  # killed after batch 7 of 2 x 4: the last backup is at batch 6 (every 3)
LAST_BACKUP = 6
SLOW = 1.5  # seconds of sleep after each batch of the run to be killed


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("resume_data"))
    make_synthetic_dataset(root, 16, 4, 0, (64, 64), progress=False)
    return root


def launch(model_dir, data_dir, *extra):
    return subprocess.Popen([sys.executable, SCRIPT, str(model_dir), data_dir, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process) -> str:
    output, _ = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, output[-3000:]
    return output


def records(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def wait_for_batch(path, batches, processes):
    """Block until `path` records batch `batches`; fail if a process ends first."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if os.path.exists(path) and any(r["batches"] >= batches for r in records(path)):
            return
        for process in processes:
            if process.poll() is not None:
                pytest.fail(f"training ended before batch {batches}: "
                            f"{process.communicate()[0][-3000:]}")
        time.sleep(0.05)
    pytest.fail(f"no batch {batches} within {TIMEOUT} s")


def weights(model_dir) -> dict:
    arrays = {}
    with h5py.File(os.path.join(model_dir, LAST_WEIGHTS), "r") as f:
        f.visititems(lambda name, item: arrays.setdefault(name, item[()])
                     if isinstance(item, h5py.Dataset) else None)
    return arrays


def assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys() and a
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def history_of(output: str) -> dict:
    line = [line for line in output.splitlines() if line.startswith("HISTORY ")][-1]
    return json.loads(line[len("HISTORY "):])


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("uninterrupted")
    output = finish(launch(model_dir, data_dir))
    return model_dir, output


def check_resumed(output, steps_path, reference_steps, killed_at):
    """The restarted process resumed after the last backup: same step, optimizer step and
    learning rate as the uninterrupted run at that step."""
    assert (f"after step {LAST_BACKUP} (epoch 2, step {LAST_BACKUP - 4} of 4; "
            f"optimizer step {LAST_BACKUP})") in output
    steps = records(steps_path)
    restart = next(i for i in range(1, len(steps))
                   if steps[i]["batches"] <= steps[i - 1]["batches"])
    before, after = steps[:restart], steps[restart:]
    assert before[-1]["batches"] == killed_at
    assert [r["batches"] for r in after] == list(range(LAST_BACKUP + 1, 9))
    expected = {r["batches"]: r for r in records(reference_steps)}
    for record in after:
        assert record == expected[record["batches"]]
    return before[-1]["batches"], after[0]


def test_kill_mid_epoch_and_resume(data_dir, uninterrupted, tmp_path):
    reference_dir, _ = uninterrupted
    process = launch(tmp_path, data_dir, "--slow", str(SLOW))
    wait_for_batch(tmp_path / "steps.jsonl", KILL_AFTER, [process])
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert backup.read_state(str(tmp_path / "backup"))["batches"] == LAST_BACKUP

    output = finish(launch(tmp_path, data_dir))
    killed, resumed = check_resumed(output, tmp_path / "steps.jsonl",
                                    reference_dir / "steps.jsonl", KILL_AFTER)
    print(f"killed after batch {killed}; resumed at batch {resumed['batches']} with "
          f"optimizer step {resumed['iterations']}, lr {resumed['learning_rate']}")
    assert_same_weights(weights(tmp_path), weights(reference_dir))


def test_two_runs_with_op_determinism_are_identical(data_dir, uninterrupted, tmp_path):
    reference_dir, reference_output = uninterrupted
    output = finish(launch(tmp_path, data_dir))
    history, expected = history_of(output), history_of(reference_output)
    print("losses:", history["loss"], "and", expected["loss"])
    assert history == expected
    assert records(tmp_path / "steps.jsonl") == records(reference_dir / "steps.jsonl")
    assert_same_weights(weights(tmp_path), weights(reference_dir))


def launch_workers(model_dir, data_dir, *extra):
    ports = ",".join(str(port) for port in free_ports(2))
    return [launch(model_dir, data_dir, "--worker", str(index), ports, *extra)
            for index in range(2)]


def test_kill_one_worker_mid_epoch_and_resume(data_dir, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    for process in launch_workers(reference, data_dir):
        finish(process)

    workers = launch_workers(killed, data_dir, "--slow", str(SLOW))
    for index in range(2):
        wait_for_batch(killed / f"steps-{index}.jsonl", KILL_AFTER, workers)
    workers[1].send_signal(signal.SIGKILL)
    workers[1].wait()
    # Its peer cannot go on alone (every step all-reduces): the cluster restarts, as a job
    # scheduler restarts it.
    workers[0].send_signal(signal.SIGKILL)
    workers[0].wait()
    for index in range(2):
        state = backup.read_state(str(killed / "backup" / f"worker-{index}"))
        assert state["batches"] == LAST_BACKUP

    outputs = [finish(process) for process in launch_workers(killed, data_dir)]
    for index, output in enumerate(outputs):
        check_resumed(output, killed / f"steps-{index}.jsonl",
                      reference / f"steps-{index}.jsonl", KILL_AFTER)
    assert_same_weights(weights(killed), weights(reference))
