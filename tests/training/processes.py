"""Subprocesses of the distributed-training tests: free local ports for a cluster, and one
process per worker, waited for together."""

import socket
import subprocess
import sys

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
