"""Built-in publishers."""

from ..hookspecs import hookimpl  # noqa: F401
