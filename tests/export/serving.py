"""Serving a SavedModel from a fresh process that imports TensorFlow and numpy only, as TF
Serving would load it (nothing of oanet_tf)."""

import json
import os
import subprocess
import sys

import numpy as np

# The subprocess: TensorFlow and numpy only. It runs each call of a JSON spec on the
# SavedModel and saves the outputs (npz) or the error (code and message).
SERVE_SCRIPT = r"""
import json, os, sys
import numpy as np
import tensorflow as tf

spec = json.load(open(sys.argv[1]))
loaded = tf.saved_model.load(spec["export_dir"])
errors = {}
for call in spec["calls"]:
    function = loaded.signatures[call["signature"]]
    if "files" in call:
        data = [open(path, "rb").read() for path in call["files"]]
        inputs = {"images": tf.constant(data, tf.string, shape=[len(data)])}
    elif "array" in call:
        inputs = {"images": tf.constant(np.load(call["array"]))}
    else:
        inputs = {}
    try:
        outputs = function(**inputs)
    except tf.errors.InvalidArgumentError as err:
        errors[call["name"]] = {"code": err.error_code, "message": err.message}
        continue
    arrays = {k: v.numpy() for k, v in outputs.items()}
    # Text as str; "*_bytes" outputs (PNG bytes) as fixed-width bytes, which drop only
    # trailing NULs (a PNG ends in its IEND chunk's CRC).
    arrays = {k: v.astype(bytes if k.endswith("_bytes") else str) if v.dtype == object
              else v for k, v in arrays.items()}
    np.savez_compressed(os.path.join(spec["out_dir"], call["name"] + ".npz"), **arrays)
assert not [m for m in sys.modules if m.split(".")[0] == "oanet_tf"], "imported oanet_tf"
json.dump(errors, open(os.path.join(spec["out_dir"], "errors.json"), "w"))
"""


def start_serving(export_dir: str, calls: list, work: str) -> subprocess.Popen:
    """Start the process on `calls` ({name, signature, files | array}); it writes
    WORK/<name>.npz per call and WORK/errors.json."""
    spec = os.path.join(work, "spec.json")
    with open(spec, "w") as f:
        json.dump({"export_dir": export_dir, "out_dir": work, "calls": calls}, f)
    script = os.path.join(work, "serve.py")
    with open(script, "w") as f:
        f.write(SERVE_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with open(os.path.join(work, "stderr.txt"), "w") as stderr:
        return subprocess.Popen([sys.executable, script, spec], cwd=work, env=env,
                                stdout=subprocess.DEVNULL, stderr=stderr)


def serving_results(process: subprocess.Popen, work: str, calls: list, timeout: float):
    """Wait for the process -> (outputs {call name: {key: array}}, errors {call name: ...})."""
    process.wait(timeout=timeout)
    with open(os.path.join(work, "stderr.txt")) as f:
        assert process.returncode == 0, f.read()[-3000:]
    outputs = {}
    for call in calls:
        path = os.path.join(work, call["name"] + ".npz")
        if os.path.exists(path):
            with np.load(path) as data:
                outputs[call["name"]] = dict(data)
    with open(os.path.join(work, "errors.json")) as f:
        return outputs, json.load(f)
