import os

import pytest

from derive.atomic import write_text


def test_a_crash_while_writing_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "report.md"
    write_text(target, "old report\n")

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_text(target, "new report\n")
    assert target.read_text() == "old report\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_write_creates_missing_directories(tmp_path):
    target = tmp_path / "a" / "b" / "figure.txt"
    write_text(target, "x")
    assert target.read_text() == "x"
