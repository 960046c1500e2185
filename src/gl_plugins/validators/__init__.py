"""gl's built-in validators, one module each; registered in :mod:`gl_plugins.builtin.validators`.

A validator is an object with ``name``, ``description``, ``defaults`` (its
settings, overridable with ``gl validate --set NAME.KEY=VALUE``) and
``validate(context) -> list[Finding]`` (see :mod:`gl_plugins.validate`).
"""
