"""exclusive_writer: one holder at a time, named to the refused; a lock file left by a
process that died blocks nobody; the lock's file (and a folder it created) go on release."""

import os
import socket

import pytest

from oanet_tf.dir_lock import LOCK_FILE, exclusive_writer
from oanet_tf.errors import OANetError


def test_a_second_writer_is_refused_naming_the_first(tmp_path):
    folder = tmp_path / "model"
    with exclusive_writer(str(folder), "train"):
        assert (folder / LOCK_FILE).read_text() == (
            f"train pid {os.getpid()} on host {socket.gethostname()}\n")
        # flock locks an open file: a second open, even in this process, is refused.
        with pytest.raises(OANetError, match=f"{folder} is in use: train pid {os.getpid()} on "
                                             f"host .* holds .*{LOCK_FILE}"):
            with exclusive_writer(str(folder), "convert"):
                pass
        (folder / "weights").write_text("written while held")
    assert sorted(os.listdir(folder)) == ["weights"]  # the lock file went; the folder stays


def test_a_folder_the_lock_created_goes_when_nothing_was_written(tmp_path):
    with pytest.raises(ValueError):
        with exclusive_writer(str(tmp_path / "new"), "train"):
            raise ValueError("refused before writing")
    assert os.listdir(tmp_path) == []


def test_a_lock_file_of_a_dead_process_blocks_nobody(tmp_path):
    (tmp_path / LOCK_FILE).write_text("train pid 999999999 on host gone\n")  # not locked
    with exclusive_writer(str(tmp_path), "train"):
        assert f"pid {os.getpid()} " in (tmp_path / LOCK_FILE).read_text()
