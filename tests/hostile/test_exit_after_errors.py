"""Issue 27, item 5: a process that has printed its error ends. `train` of images resized to
100000 pixels a side printed the failed allocation (ResourceExhaustedError), then waited
forever at 0% CPU while Python shut down; now the process ends right after that line.

The run is a subprocess under a timeout (a hang is what this catches) and a limit on its
address space: the allocations must fail, not fill the machine."""

import os
import resource
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "tests", "scripts", "failing_pipeline.py")
EXIT_TIMEOUT_S = 480  # the run takes a minute or two; the hang lasted until killed
ADDRESS_SPACE = 12 << 30


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def test_a_failed_allocation_in_the_input_pipeline_ends_the_process(tmp_path):
    done = subprocess.run(
        [sys.executable, SCRIPT, "fail-training", str(tmp_path / "data"),
         str(tmp_path / "model")], cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
        capture_output=True, text=True, timeout=EXIT_TIMEOUT_S, preexec_fn=_limit_memory)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 1 and len(errors) == 1, done.stderr[-3000:]
    assert "ResourceExhaustedError" in errors[0] and "OOM when allocating" in errors[0]
