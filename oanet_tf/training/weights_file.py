"""Weights files written whole or not at all, with the space they need checked first."""

from __future__ import annotations

import errno
import os
import shutil

import numpy as np

from oanet_tf.fileio import atomic_path

# What a weights file takes beyond its numbers: HDF5 headers per variable (about 1.5 KB
# measured) and for the file.
H5_BYTES_PER_VARIABLE = 2048
H5_FILE_BYTES = 8192


def save_weights(model, path: str, finish=None):
    """`model.save_weights` (its optimizer's state included) into `path` through a temporary
    file beside it (`fileio.atomic_path`); an OS error (a full disk) names `path`. `finish(temp)`
    adds to the temporary file before it takes the name (the step of a checkpoint).

    The space the file needs is checked first: h5py raises on a write that fails, but leaves
    HDF5 with a file it can neither write nor close, which crashes the interpreter at exit."""
    variables = list(model.weights)
    if getattr(model, "optimizer", None) is not None:
        variables += list(model.optimizer.variables)
    need = H5_FILE_BYTES + sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
                               + H5_BYTES_PER_VARIABLE for v in variables)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    free = shutil.disk_usage(directory).free
    if free < need:
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (the weights take about "
                                    f"{need / 1e6:.1f} MB, {free / 1e6:.1f} MB are free)", path)
    with atomic_path(path) as temp:
        model.save_weights(temp, overwrite=True)
        if finish is not None:
            finish(temp)
