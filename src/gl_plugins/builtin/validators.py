"""Built-in validators."""

from ..hookspecs import hookimpl  # noqa: F401
