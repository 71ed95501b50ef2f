"""oanet_tf: OANet panoptic segmentation (Liu et al., CVPR 2019) in Keras 3 on TensorFlow."""

# The one definition of the version: pyproject.toml reads it (dynamic version), `--version`
# prints it and environment.json records it, so an editable install whose metadata is older
# than its source still reports the code that runs.
__version__ = "0.1.0"

# The public names of the package root -> their modules, imported on first use: `import
# oanet_tf` and the command line's --help stay free of TensorFlow.
_LAZY = {
    "PanopticSegmenter": "oanet_tf.segmenter",
    "PanopticResult": "oanet_tf.segmenter",
    "list_presets": "oanet_tf.presets",
    "resolve_preset": "oanet_tf.presets",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'oanet_tf' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
