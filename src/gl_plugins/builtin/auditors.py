"""Built-in auditors."""

from ..hookspecs import hookimpl  # noqa: F401
