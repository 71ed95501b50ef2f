"""The torchvision peer's serve_files case: JPEG files through its default transform. Skipped
without the benchmark venv."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from harness.torch_peer import DEFAULT_TORCH_PYTHON, TorchClient

COCO_THINGS = 80


@pytest.mark.skipif(not os.path.isfile(DEFAULT_TORCH_PYTHON),
                    reason=f"no torch venv at {DEFAULT_TORCH_PYTHON} (see torch_peer.VENV_HINT)")
def test_serve_files_times_the_given_jpegs(tmp_path):
    path = tmp_path / "small.jpg"
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(buffer, format="JPEG")
    path.write_bytes(buffer.getvalue())
    client = TorchClient(DEFAULT_TORCH_PYTHON, threads=1)
    try:
        client.prepare("serve_files", (0, 0), 1, 0, 0, COCO_THINGS, files=[str(path)])
        seconds = client.time(1)
    finally:
        client.close()
    assert len(seconds) == 1 and seconds[0] > 0
