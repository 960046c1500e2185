"""Built-in recipes: ``uniform``, ``protect`` and ``budget`` (see :mod:`gl_plugins.recipes`)."""

from ..hookspecs import hookimpl


@hookimpl(trylast=True)
def gl_register_recipes(register):
    from ..recipes import Budget, Protect, Uniform

    for recipe in (Uniform(), Protect(), Budget()):
        register(recipe)
