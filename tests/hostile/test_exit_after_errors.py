"""Issue 27, item 5: a process that has printed its error ends. `train` of images resized to
100000 pixels a side printed the failed allocation (ResourceExhaustedError), then waited at
0% CPU while Python shut down (for minutes, or until killed); now the process ends as soon
as that line is out.

The run is a subprocess under a limit on its address space (the allocations must fail, not
fill the machine); the time from its error line to its end is what is checked."""

import os
import resource
import subprocess
import sys
import threading

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "tests", "scripts", "failing_pipeline.py")
RUN_TIMEOUT_S = 600  # until the error line: a minute or two, more on a busy machine
EXIT_AFTER_ERROR_S = 30  # from the error line to the end of the process
ADDRESS_SPACE = 12 << 30


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def test_a_failed_allocation_in_the_input_pipeline_ends_the_process(tmp_path):
    process = subprocess.Popen(
        [sys.executable, SCRIPT, "fail-training", str(tmp_path / "data"),
         str(tmp_path / "model")], cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=_limit_memory)
    watchdog = threading.Timer(RUN_TIMEOUT_S, process.kill)
    watchdog.start()
    try:
        error = next((line for line in process.stderr if line.startswith("error: ")), None)
        assert error is not None, "the run ended or was killed before printing its error"
        try:
            code = process.wait(timeout=EXIT_AFTER_ERROR_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {EXIT_AFTER_ERROR_S} s after: {error}")
    finally:
        watchdog.cancel()
        process.kill()
        process.wait()
    assert code == 1
    assert "ResourceExhaustedError" in error and "OOM when allocating" in error
    assert process.stderr.read().strip() == ""  # nothing after the one line
