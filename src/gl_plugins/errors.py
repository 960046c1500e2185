"""The one error type for problems a user can cause.

Anything raised as :class:`GLError` is rendered by the CLI as a single
sentence on stderr with exit status 2. Bugs are left to raise normally.
"""

from __future__ import annotations

import os


class GLError(Exception):
    """A problem with the user's input, files, environment or servers."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(GLError):
    """A file that cannot be used: names the file and, where known, the position."""

    def __init__(self, path: "str | os.PathLike[str]", message: str, *, offset: int | None = None,
                 line: int | None = None):
        self.path = os.fspath(path)
        self.offset = offset
        self.line = line
        where = ""
        if line is not None:
            where = f" (line {line})"
        elif offset is not None:
            where = f" (at byte {offset})"
        super().__init__(f"{self.path}{where}: {message}")


class ToolError(GLError):
    """A llama.cpp tool is missing or failed."""


def open_input(path: "str | os.PathLike[str]", kind: str = "a file"):
    """Open an input for reading bytes; one clear InputError when it cannot be opened."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except IsADirectoryError:
        raise InputError(path, f"is a folder, not {kind}") from None
    except OSError as e:
        raise InputError(path, f"cannot be read ({e.strerror or e})") from None


def read_input(path: "str | os.PathLike[str]", kind: str = "a file") -> bytes:
    """All bytes of an input file (see :func:`open_input`)."""
    with open_input(path, kind) as f:
        try:
            return f.read()
        except OSError as e:
            raise InputError(path, f"cannot be read ({e.strerror or e})") from None


def read_text_input(path: "str | os.PathLike[str]", kind: str = "a file") -> str:
    """An input file as UTF-8 text; the first invalid byte is named."""
    data = read_input(path, kind)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(path, "is not valid UTF-8 text", offset=e.start) from None
