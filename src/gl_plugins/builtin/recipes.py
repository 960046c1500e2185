"""Built-in recipes."""

from ..hookspecs import hookimpl  # noqa: F401
