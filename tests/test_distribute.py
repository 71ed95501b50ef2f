"""model.fit under MirroredStrategy (2 logical CPUs) gives the losses of one device."""

import json
import os
import subprocess
import sys

import numpy as np

SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "distributed_losses.py")


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
