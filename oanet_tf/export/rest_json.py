"""The JSON body TF Serving's REST API returns for a signature's outputs, written here as its
encoder writes it (tensorflow_serving/util/json_tensor.cc, MakeJsonFromTensors).

tensorflow_model_server is a separate binary that cannot be installed everywhere; this lets
the tests check what a REST client receives (a `*_bytes` string output as {"b64": ...}) and
measure the size of a response without it. The encoder's rules, all kept here:
- rapidjson's PrettyWriter, 4-space indentation; the columnar form ({"outputs": {...}}, the
  answer to an "inputs" request) puts every array element on its own line, the row form
  ({"predictions": [...]}, the answer to "instances") writes each item's arrays on one line,
  elements separated by ", ";
- a string output whose name ends in "_bytes" as {"b64": base64}, other strings as JSON text;
- floats as the shortest six-significant-digit form (C's %g) that reads back to the same
  value, else 9 digits, with ".0" added to whole numbers; ints as ints, bools as true/false.
Output names are written in sorted order (TF Serving's map order is unspecified; the size
does not depend on it).
"""

from __future__ import annotations

import base64
import json

import numpy as np

BYTES_SUFFIX = "_bytes"
INDENT = 4


def columnar_body(outputs: dict) -> str:
    """{name: numpy array} -> the body of TF Serving's answer to a columnar request."""
    writer = _PrettyWriter()
    writer.start_object()
    writer.key("outputs")
    named = len(outputs) > 1
    if named:
        writer.start_object()
    for name in sorted(outputs):
        if named:
            writer.key(name)
        _write_tensor(writer, np.asarray(outputs[name]), name.endswith(BYTES_SUFFIX))
    if named:
        writer.end_object()
    writer.end_object()
    return writer.text()


def row_body(outputs: dict) -> str:
    """{name: numpy array [B, ...]} -> the body of TF Serving's answer to a row request."""
    sizes = {np.asarray(v).shape[0] for v in outputs.values()}
    if len(sizes) != 1:
        raise ValueError(f"outputs of different batch sizes {sorted(sizes)} have no row form")
    writer = _PrettyWriter()
    writer.start_object()
    writer.key("predictions")
    writer.start_array()
    named = len(outputs) > 1
    for item in range(sizes.pop()):
        if named:
            writer.start_object()
        writer.single_line = True
        for name in sorted(outputs):
            if named:
                writer.key(name)
            array = np.asarray(outputs[name])
            _write_tensor(writer, np.asarray(array[item], dtype=array.dtype),
                          name.endswith(BYTES_SUFFIX))
        writer.single_line = False
        if named:
            writer.end_object()
    writer.end_array()
    writer.end_object()
    return writer.text()


def _write_tensor(writer, array: np.ndarray, as_bytes: bool):
    if array.ndim == 0:
        writer.raw(_value(array.item(), array.dtype, as_bytes), as_bytes)
        return
    writer.start_array()
    for element in array:
        _write_tensor(writer, np.asarray(element, dtype=array.dtype), as_bytes)
    writer.end_array()


def _value(value, dtype: np.dtype, as_bytes: bool):
    """One scalar -> its JSON text, or for bytes outputs the base64 text of {"b64": ...}."""
    if dtype.kind == "f":
        return _decimal(value, dtype)
    if dtype.kind == "b":
        return "true" if value else "false"
    if dtype.kind in "iu":
        return str(int(value))
    data = value if isinstance(value, bytes) else str(value).encode()
    if as_bytes:
        return base64.b64encode(data).decode("ascii")
    return json.dumps(data.decode("utf-8"), ensure_ascii=False)


def _decimal(value: float, dtype: np.dtype) -> str:
    if np.isnan(value):
        return "NaN"
    if np.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    text = "%g" % value
    if dtype.type(float(text)) != dtype.type(value):
        text = "%.*g" % (9 if dtype == np.float32 else 17, value)
    if "." not in text and "e" not in text:
        text += ".0"
    return text


class _PrettyWriter:
    """rapidjson::PrettyWriter's output, for the calls the encoder makes."""

    def __init__(self):
        self.parts, self.levels, self.single_line = [], [], False

    def _prefix(self):
        if not self.levels:
            return
        level = self.levels[-1]
        if level["array"]:
            if level["count"]:
                self.parts.append(", " if self.single_line else ",")
            if not self.single_line:
                self.parts.append("\n" + self._indent())
        else:
            if level["count"]:
                self.parts.append(",\n" if level["count"] % 2 == 0 else ": ")
            else:
                self.parts.append("\n")
            if level["count"] % 2 == 0:
                self.parts.append(self._indent())
        level["count"] += 1

    def _indent(self) -> str:
        return " " * (INDENT * len(self.levels))

    def _start(self, bracket: str, array: bool):
        self._prefix()
        self.parts.append(bracket)
        self.levels.append({"array": array, "count": 0})

    def _end(self, bracket: str, newline: bool):
        empty = self.levels.pop()["count"] == 0
        if not empty and newline:
            self.parts.append("\n" + self._indent())
        self.parts.append(bracket)

    def start_object(self):
        self._start("{", array=False)

    def end_object(self):
        self._end("}", newline=True)

    def start_array(self):
        self._start("[", array=True)

    def end_array(self):
        self._end("]", newline=not self.single_line)

    def key(self, name: str):
        self._prefix()
        self.parts.append(json.dumps(name))

    def raw(self, text: str, as_b64: bool = False):
        """A value's text; with as_b64, the object {"b64": text}."""
        if not as_b64:
            self._prefix()
            self.parts.append(text)
            return
        self.start_object()
        self.key("b64")
        self._prefix()
        self.parts.append(json.dumps(text))
        self.end_object()

    def text(self) -> str:
        return "".join(self.parts)
