"""oanet_tf: OANet panoptic segmentation (Liu et al., CVPR 2019) in Keras 3 on TensorFlow."""

# The one definition of the version: pyproject.toml reads it (dynamic version), `--version`
# prints it and environment.json records it, so an editable install whose metadata is older
# than its source still reports the code that runs.
__version__ = "0.1.0"

# Exported lazily, so that `import oanet_tf` imports neither TensorFlow nor Keras.
_LAZY = {"list_presets": "oanet_tf.presets", "resolve_preset": "oanet_tf.presets"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'oanet_tf' has no attribute {name!r}")
