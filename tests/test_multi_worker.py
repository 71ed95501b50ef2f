"""model.fit under MultiWorkerMirroredStrategy: 2 worker processes on 127.0.0.1 give the
losses of one process with the same global batch."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

SCRIPTS = os.path.join(os.path.dirname(__file__), "scripts")
TIMEOUT = 600


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_workers(script: str, args_of_worker, timeout: int = TIMEOUT):
    """Start one process per argument list; wait for all; return their CompletedProcess-like
    (returncode, output) pairs."""
    processes = [subprocess.Popen([sys.executable, script, *args], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
                 for args in args_of_worker]
    results = []
    try:
        for process in processes:
            output, _ = process.communicate(timeout=timeout)
            results.append((process.returncode, output))
    finally:
        for process in processes:
            process.kill()
    return results


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
