"""Outputs are written through a temporary file and a rename: never half-written, never 0600."""

import os
import stat

import pytest

from gl_plugins.atomic import atomic_file, atomic_write


def test_write_replaces_and_keeps_usual_permissions(tmp_path):
    target = tmp_path / "map.txt"
    atomic_write(target, "a=q4_0\n")
    assert target.read_text() == "a=q4_0\n"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    atomic_write(target, b"b=q8_0\n")
    assert target.read_bytes() == b"b=q8_0\n"
    assert [p.name for p in tmp_path.iterdir()] == ["map.txt"]


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as f:
            f.write(b"half of the new")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_leftovers_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "x.gguf"
    (tmp_path / ".x.gguf.abc123.tmp").write_bytes(b"killed mid-write")
    (tmp_path / ".other.gguf.abc.tmp").write_bytes(b"not ours")
    atomic_write(target, b"done")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.gguf.abc.tmp", "x.gguf"]


def test_missing_folder_is_an_input_error_unless_asked_to_create_it(tmp_path):
    from gl_plugins.errors import InputError

    with pytest.raises(InputError) as e:
        atomic_write(tmp_path / "no" / "m.txt", "x")
    assert "m.txt" in str(e.value) and "cannot be written" in str(e.value)
    atomic_write(tmp_path / "cache" / "d.json", "{}", parents=True)
    assert (tmp_path / "cache" / "d.json").read_text() == "{}"


def test_the_open_temporary_is_named_by_its_path(tmp_path):
    """A writer that reopens ``f.name`` (a package's ``assemble(path)``) gets the temporary's path."""
    target = tmp_path / "model.gguf"
    with atomic_file(target) as f:
        assert isinstance(f.name, str) and os.path.dirname(f.name) == str(tmp_path)
        with open(f.name, "wb") as again:
            again.write(b"GGUF")
    assert target.read_bytes() == b"GGUF"
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]


def test_atomic_path_removes_the_temporary_when_the_writer_fails(tmp_path):
    from gl_plugins.atomic import atomic_path

    target = tmp_path / "base-f16.gguf"
    with pytest.raises(OSError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise OSError("No space left on device")
    assert list(tmp_path.iterdir()) == []
