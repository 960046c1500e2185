"""Built-in predictors."""

from ..hookspecs import hookimpl  # noqa: F401
