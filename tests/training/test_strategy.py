"""Training under tf.distribute strategies (oanet_tf.training.strategy): model.fit under
MirroredStrategy (2 logical CPUs) gives the losses of one device, and under
MultiWorkerMirroredStrategy 2 worker processes on 127.0.0.1 give the losses of one process
with the same global batch (both as subprocesses, in tests/scripts); and the strategy
factory."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorflow as tf

from oanet_tf.errors import ConfigError
from oanet_tf.training.strategy import make_strategy
from tests.training.processes import free_ports, run_workers

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")
SCRIPT = os.path.join(SCRIPTS, "distributed_losses.py")


def test_mirrored_strategy_matches_one_device():
    result = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    one, mirrored = report["one_device"], report["mirrored"]
    assert set(one) == set(mirrored)
    for name in one:
        # Steps 2 and 3 depend on the aggregated gradients of the steps before.
        np.testing.assert_allclose(mirrored[name], one[name], rtol=2e-4, atol=1e-5,
                                   err_msg=name)
    assert one["loss"][2] < one["loss"][0]


def test_two_workers_match_one_process(tmp_path):
    script = os.path.join(SCRIPTS, "multi_worker_losses.py")
    ports = ",".join(str(p) for p in free_ports(2))
    outputs = [str(tmp_path / f"worker{i}.json") for i in range(2)]
    results = run_workers(script, [["worker", str(i), ports, outputs[i]] for i in range(2)])
    for code, output in results:
        assert code == 0, output[-3000:]
    one_out = str(tmp_path / "one.json")
    code, output = run_workers(script, [["one_device", one_out]])[0]
    assert code == 0, output[-3000:]

    workers = [json.load(open(path)) for path in outputs]
    one = json.load(open(one_out))
    assert [w["replicas"] for w in workers] == [2, 2] and one["replicas"] == 1
    assert workers[0]["history"] == workers[1]["history"]  # both report the global means
    assert workers[0]["checksum"] == workers[1]["checksum"]  # weights stay in sync
    history, expected = workers[0]["history"], one["history"]
    print("two workers:", history["loss"], "one process:", expected["loss"])
    assert set(history) == set(expected)
    for name in expected:
        # Steps 2 and 3 depend on the gradients all-reduced across the workers.
        np.testing.assert_allclose(history[name], expected[name], rtol=2e-4, atol=1e-5,
                                   err_msg=name)
    assert expected["loss"][2] < expected["loss"][0]
    np.testing.assert_allclose(workers[0]["checksum"], one["checksum"], rtol=1e-5)


# ------------------------------------------------------------------------- make_strategy, roles

def test_make_strategy_rejects_an_unknown_name():
    with pytest.raises(ConfigError, match="--strategy 'tpu': one of auto, one_device, mirrored"):
        make_strategy("tpu")


@pytest.mark.parametrize("name", ["auto", "one_device"])
def test_one_device_strategy_without_several_gpus(name):
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1 and name == "auto":
        pytest.skip("several GPUs: auto is MirroredStrategy")
    strategy = make_strategy(name)
    assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
    assert strategy.num_replicas_in_sync == 1
    device = tf.DeviceSpec.from_string(strategy.extended.worker_devices[0])
    assert device.device_type == ("GPU" if gpus else "CPU") and device.device_index == 0


def test_mirrored_on_cpu_warns_unless_onednn_is_off(monkeypatch):
    if tf.config.list_logical_devices("GPU"):
        pytest.skip("the warning concerns CPU replicas")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    with pytest.warns(UserWarning, match="TF_ENABLE_ONEDNN_OPTS=0"):
        strategy = make_strategy("mirrored")
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_strategy("mirrored")
