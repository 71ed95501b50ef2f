"""A run killed with SIGKILL mid-epoch (one process, or one worker of two) resumes from its
last backup with the same step, optimizer state and learning rate, and ends with the weights
of an uninterrupted run. With op determinism on, the killed run's steps before the kill (a
second run of the same seed) have the uninterrupted run's losses, bit for bit."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import types

import h5py
import keras
import numpy as np
import pytest

from oanet_tf.data.synthetic import make_synthetic_dataset
from oanet_tf.errors import OANetError
from oanet_tf.training import backup
from oanet_tf.inference.trained_model import LAST_WEIGHTS
from tests.training.processes import free_ports

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts",
                      "resume_run.py")
TIMEOUT = 600
KILL_AFTER = 7  # killed after batch 7 of 2 x 4: the last backup is at batch 6 (every 3)
LAST_BACKUP = 6
# Keras' loss log is a running mean over the epoch: a run resumed mid-epoch restarts it.
RESUMED_KEYS = ("batches", "iterations", "learning_rate")
EARLIER_SECONDS = 1e6


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


def weights(path) -> dict:
    """The arrays of a weights file, or of a model dir's last checkpoint."""
    if os.path.isdir(path):
        path = os.path.join(path, LAST_WEIGHTS)
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: arrays.setdefault(name, item[()])
                     if isinstance(item, h5py.Dataset) else None)
    return arrays


def assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys() and a
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("uninterrupted")
    finish(launch(model_dir, data_dir))
    return model_dir


def check_resumed(output, steps_path, reference_steps, killed_at):
    """The killed process ran the uninterrupted run's steps (losses included) up to the kill;
    the restarted one resumed after the last backup with the same step, optimizer step and
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
    assert before == [expected[r["batches"]] for r in before]
    for record in after:
        assert ({k: record[k] for k in RESUMED_KEYS}
                == {k: expected[record["batches"]][k] for k in RESUMED_KEYS})
    return before[-1]["batches"], after[0]


def test_kill_mid_epoch_and_resume(data_dir, uninterrupted, tmp_path):
    reference_dir = uninterrupted
    process = launch(tmp_path, data_dir, "--hang-after", str(KILL_AFTER))
    wait_for_batch(tmp_path / "steps.jsonl", KILL_AFTER, [process])
    process.send_signal(signal.SIGKILL)
    process.wait()
    state = backup.read_state(str(tmp_path / "backup"))
    assert state["batches"] == LAST_BACKUP and state["seconds"] > 0
    # The seconds before the backup carry over: marked with a value no attempt reaches.
    backup.write_json(str(tmp_path / "backup" / backup.STATE_FILE),
                      {**state, "seconds": EARLIER_SECONDS})

    started = time.monotonic()
    output = finish(launch(tmp_path, data_dir))
    seconds = float(re.search(r"trained (\S+) seconds", output).group(1))
    assert EARLIER_SECONDS < seconds < EARLIER_SECONDS + time.monotonic() - started
    killed, resumed = check_resumed(output, tmp_path / "steps.jsonl",
                                    reference_dir / "steps.jsonl", KILL_AFTER)
    print(f"killed after batch {killed}; resumed at batch {resumed['batches']} with "
          f"optimizer step {resumed['iterations']}, lr {resumed['learning_rate']}")
    assert_same_weights(weights(tmp_path), weights(reference_dir))


def launch_workers(model_dir, data_dir, *extra):
    ports = ",".join(str(port) for port in free_ports(2))
    return [launch(model_dir, data_dir, "--worker", str(index), ports, *extra)
            for index in range(2)]


def test_kill_one_worker_mid_epoch_and_resume(data_dir, tmp_path):
    """Both workers resume at the last backup and compute the killed run's next step again,
    bit for bit (the one-process test above compares a whole run with an uninterrupted one;
    here the killed run's own step stands in for that second run)."""
    workers = launch_workers(tmp_path, data_dir, "--hang-after", str(KILL_AFTER),
                             "--save-after", str(KILL_AFTER))
    for index in range(2):
        wait_for_batch(tmp_path / f"steps-{index}.jsonl", KILL_AFTER, workers)
    workers[1].send_signal(signal.SIGKILL)
    workers[1].wait()
    # Its peer cannot go on alone (every step all-reduces): the cluster restarts, as a job
    # scheduler restarts it.
    workers[0].send_signal(signal.SIGKILL)
    workers[0].wait()
    killed_weights = {}
    for index in range(2):
        state = backup.read_state(str(tmp_path / "backup" / f"worker-{index}"))
        assert state["batches"] == LAST_BACKUP
        saved = tmp_path / f"after-{KILL_AFTER}-{index}.weights.h5"
        killed_weights[index] = weights(saved)
        saved.unlink()

    outputs = [finish(process) for process in
               launch_workers(tmp_path, data_dir, "--save-after", str(KILL_AFTER))]
    for index, output in enumerate(outputs):
        assert (f"after step {LAST_BACKUP} (epoch 2, step {LAST_BACKUP - 4} of 4; "
                f"optimizer step {LAST_BACKUP})") in output
        steps = records(tmp_path / f"steps-{index}.jsonl")
        restart = next(i for i in range(1, len(steps))
                       if steps[i]["batches"] <= steps[i - 1]["batches"])
        before, after = steps[:restart], steps[restart:]
        assert [r["batches"] for r in before] == list(range(1, KILL_AFTER + 1))
        assert [r["batches"] for r in after] == list(range(LAST_BACKUP + 1, 9))
        assert ({k: after[0][k] for k in RESUMED_KEYS}
                == {k: before[-1][k] for k in RESUMED_KEYS})
        assert_same_weights(weights(tmp_path / f"after-{KILL_AFTER}-{index}.weights.h5"),
                            killed_weights[index])


# ------------------------------------------------------------------ the backup, in one process

def _tiny_fit_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    return model


def _tiny_data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(10, 3)).astype("float32"), rng.normal(size=(10, 2)).astype("float32")


def test_backup_dir_for_one_process_and_each_worker():
    assert backup.backup_dir_for("run", None) == os.path.join("run", "backup")
    assert backup.backup_dir_for("run", 0) == os.path.join("run", "backup", "worker-0")
    assert backup.backup_dir_for("run", 3) == os.path.join("run", "backup", "worker-3")


def test_backups_every_n_steps_and_at_epoch_ends(tmp_path, monkeypatch):
    saved = []
    write_json = backup.write_json
    monkeypatch.setattr(backup, "write_json",
                        lambda path, data: (saved.append(data["batches"]), write_json(path, data)))
    clock = iter(range(100))  # seconds: created at 0, each later reading one more
    monkeypatch.setattr(backup, "time", types.SimpleNamespace(monotonic=lambda: float(next(clock))))
    model = _tiny_fit_model()
    x, y = _tiny_data()
    callback = backup.TrainingBackup(str(tmp_path), every_steps=2)
    model.fit(x, y, batch_size=2, epochs=2, steps_per_epoch=5, verbose=0, callbacks=[callback])
    # Steps 2 and 4, the end of epoch 1 (5), steps 6, 8, 10; not again at the end of epoch 2.
    assert saved == [2, 4, 5, 6, 8, 10]
    assert backup.read_state(str(tmp_path)) == {"batches": 10,
                                                "weights": "step-000000010.weights.h5",
                                                "seconds": 6.0}
    assert sorted(os.listdir(tmp_path)) == ["state.json", "step-000000010.weights.h5"]
    # Resumed at batch 10: counting goes on from there.
    saved.clear()
    resumed = backup.TrainingBackup(str(tmp_path), every_steps=4, batches_done=10,
                                    seconds_done=backup.seconds_trained(str(tmp_path)))
    model.fit(x, y, batch_size=2, epochs=1, steps_per_epoch=3, verbose=0, callbacks=[resumed])
    assert saved == [12, 13]
    # Six backups read the clock at 1..6; the resumed callback, created at 7, saves at 8 and
    # 9 and is asked at 10: the 6 seconds before it, then 2 and 3.
    assert backup.seconds_trained(str(tmp_path)) == 6.0 + 2.0
    assert resumed.seconds() == 6.0 + 3.0


def test_backups_before_seconds_were_counted_read_as_zero(tmp_path):
    (tmp_path / backup.STATE_FILE).write_text(
        json.dumps({"batches": 3, "weights": "step-000000003.weights.h5"}))
    assert backup.seconds_trained(str(tmp_path)) == 0.0
    assert backup.seconds_trained(str(tmp_path / "none")) == 0.0


def test_restore_puts_back_weights_and_optimizer_state(tmp_path):
    model = _tiny_fit_model()
    x, y = _tiny_data()
    assert backup.restore(model, str(tmp_path)) == 0  # no backup: a fresh start
    model.fit(x, y, batch_size=2, epochs=1, steps_per_epoch=3, verbose=0,
              callbacks=[backup.TrainingBackup(str(tmp_path), every_steps=3)])
    fresh = _tiny_fit_model()
    assert backup.restore(fresh, str(tmp_path)) == 3
    assert int(fresh.optimizer.iterations) == int(model.optimizer.iterations) == 3
    for restored, trained in zip(fresh.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(restored, trained)
    for restored, trained in zip(fresh.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(restored.numpy(), trained.numpy())  # momentum too
    # One more step from either gives the same weights.
    for m in (model, fresh):
        m.fit(x[:2], y[:2], batch_size=2, epochs=1, verbose=0, shuffle=False)
    for restored, trained in zip(fresh.get_weights(), model.get_weights()):
        np.testing.assert_allclose(restored, trained, rtol=1e-6)


def test_bad_backups_are_reported(tmp_path):
    with pytest.raises(OANetError, match="backup_every_steps must be positive, got 0"):
        backup.TrainingBackup(str(tmp_path), every_steps=0)
    state = tmp_path / backup.STATE_FILE
    for bad in ({"batches": 3}, {"batches": 3, "weights": "w.h5", "seconds": -1},
                {"batches": 3, "weights": "w.h5", "seconds": "10"},
                {"batches": 3, "weights": "w.h5", "seconds": float("nan")}):
        state.write_text(json.dumps(bad))
        with pytest.raises(OANetError, match="not a backup state"):
            backup.read_state(str(tmp_path))
    state.write_text(json.dumps({"batches": 3, "weights": "step-000000003.weights.h5"}))
    (tmp_path / "step-000000003.weights.h5").write_bytes(b"not HDF5")
    with pytest.raises(OANetError,
                       match="cannot be loaded.*move .* away, or train --overwrite to start"):
        backup.restore(_tiny_fit_model(), str(tmp_path))
