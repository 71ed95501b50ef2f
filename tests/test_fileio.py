"""oanet_tf.fileio: a file written through a temporary beside it replaces the target only when
the write completes; JSON read and written with errors that name the file."""

import json
import os

import pytest

from oanet_tf.fileio import atomic_open, atomic_path, read_json, write_json


def test_atomic_path_replaces_the_target_on_success(tmp_path):
    target = tmp_path / "new" / "model.weights.h5"  # the folder is made
    with atomic_path(str(target)) as temp:
        assert os.path.dirname(temp) == str(target.parent)
        assert temp.endswith("-model.weights.h5") and temp != str(target)
        with open(temp, "w") as f:
            f.write("complete")
        assert not target.exists()  # nothing visible before the block ends
    assert target.read_text() == "complete"
    assert os.listdir(target.parent) == ["model.weights.h5"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_path_keeps_the_old_file_when_the_write_fails(tmp_path, error):
    target = tmp_path / "state.json"
    target.write_text("old")
    with pytest.raises(error):
        with atomic_path(str(target)) as temp:
            with open(temp, "w") as f:
                f.write("half")
            raise error()
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.json"]  # the temporary is gone
    with pytest.raises(ValueError):
        with atomic_path(str(target)):
            raise ValueError("failed before writing anything")
    assert os.listdir(tmp_path) == ["state.json"]


def test_atomic_open_text_and_binary(tmp_path):
    text, data = tmp_path / "a.txt", tmp_path / "b.bin"
    with atomic_open(str(text)) as f:
        f.write("é\n")
    with atomic_open(str(data), "wb") as f:
        f.write(b"\x00\xff")
    assert text.read_bytes() == "é\n".encode("utf-8")
    assert data.read_bytes() == b"\x00\xff"
    text.write_text("old")
    with pytest.raises(OSError):
        with atomic_open(str(text)) as f:
            f.write("new")
            raise OSError("disk full")
    assert text.read_text() == "old"


def test_json_round_trip(tmp_path):
    path = str(tmp_path / "data.json")
    value = {"batches": 6, "weights": "step-000000006.weights.h5", "list": [1.5, None]}
    write_json(path, value, indent=2)
    with open(path) as f:
        assert json.load(f) == value
    assert read_json(path) == value


def test_read_json_errors_name_the_file(tmp_path):
    missing = str(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match=f"backup state not found: {missing}"):
        read_json(missing, "backup state")
    broken = tmp_path / "broken.json"
    broken.write_text('{"batches": ')
    with pytest.raises(ValueError, match="broken.json: not valid JSON") as info:
        read_json(str(broken))
    assert str(broken) in str(info.value)
