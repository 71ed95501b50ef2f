"""`predict --model-dir` runs ImagePredictor in process, without the export module (the
equality of its files with the SavedModel's is tested in tests/export/test_saved_model.py)."""

import subprocess
import sys

IMPORTS_OF_THE_MODEL_DIR_PATH = """
import sys
from oanet_tf.cli import predict
from oanet_tf.inference import image_predictor, postprocessor, visualize, writer
from oanet_tf.training import model_dir
loaded = sorted(m for m in sys.modules if m.startswith("oanet_tf.export"))
assert not loaded, loaded
"""


def test_model_dir_path_does_not_import_the_export_module():
    done = subprocess.run([sys.executable, "-c", IMPORTS_OF_THE_MODEL_DIR_PATH],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
