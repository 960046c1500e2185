"""The floor: the smallest file of a model that still passes every quality gate (``gl floor``).

:mod:`gl_plugins.floor.search` walks llama.cpp's stock ladder and searches the
``budget`` recipe's target bits per weight, measuring every candidate through
:func:`gl_plugins.validate.candidates.measure` (KL divergence against the base,
the generation-loop check, structure, plan match), so each result is cached and
a second run reuses it. :mod:`gl_plugins.floor.report` writes the markdown
report with its picture.
"""
