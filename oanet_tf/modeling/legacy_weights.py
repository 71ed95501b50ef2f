"""Weights files saved before OANet received its components (commit 3a279cc and earlier).

Keras names each variable in a `.weights.h5` file by the path of layers that holds it. The
components moved five layers: the RPN and stuff heads into their branches, the box and mask
heads into the RoI heads, the SRM's convolutions into its component. Such a file is rewritten
with the new paths (the values unchanged) into a temporary file that Keras then loads.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

import h5py

# Path in a file of the first layout -> path today.
V1_PATHS = {
    "layers/rpn_head": "layers/rpn/head",
    "layers/stuff_head": "layers/stuff_branch/head",
    "box_head": "roi_heads/box_head",
    "mask_head": "roi_heads/mask_head",
    "srm": "srm/module",
}
V1_MARKER = "box_head"  # a top-level group only files of the first layout have


def is_v1(path: str) -> bool:
    """Whether the weights file at `path` has the layout before the components."""
    if not h5py.is_hdf5(path):
        return False
    with h5py.File(path, "r") as f:
        return V1_MARKER in f


def upgrade_v1(source: str, target: str):
    """Copy the weights file `source` (first layout) to `target` with today's paths."""
    with h5py.File(source, "r") as old, h5py.File(target, "w") as new:
        for key, value in old.attrs.items():
            new.attrs[key] = value
        for name in old:
            children = ([f"{name}/{child}" for child in old[name]] if name == "layers"
                        else [name])
            for path in children:
                destination = V1_PATHS.get(path, path)
                parent = os.path.dirname(destination)
                group = new.require_group(parent) if parent else new
                old.copy(old[path], group, name=os.path.basename(destination))
            if name == "layers":
                for key, value in old[name].attrs.items():
                    new.require_group(name).attrs[key] = value


@contextlib.contextmanager
def current_layout(path: str):
    """Yield a path of the weights in today's layout: `path` itself, or an upgraded
    temporary copy of a first-layout file (removed afterwards)."""
    if not (os.path.isfile(path) and is_v1(path)):
        yield path
        return
    handle, upgraded = tempfile.mkstemp(suffix=".weights.h5")
    os.close(handle)
    try:
        upgrade_v1(path, upgraded)
        yield upgraded
    finally:
        os.remove(upgraded)
