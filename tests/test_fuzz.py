"""Property tests: every parser of outside input, fed mutated valid files.

The budget per target is GL_FUZZ_EXAMPLES (default 150) so CI stays bounded;
bench/fuzz.py runs the same targets for 100,000 cases each.
"""

import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_targets import TARGETS, check, mutate

EXAMPLES = int(os.environ.get("GL_FUZZ_EXAMPLES", "150"))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_parser_refuses_mutated_input_cleanly(name, tmp_path_factory):
    t = TARGETS[name]
    folder = t.folder(tmp_path_factory.mktemp(name))
    seeds = t.seeds()
    for seed in seeds:  # the seeds themselves are valid
        assert check(t, seed, folder) is None

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.integers(0, len(seeds) - 1), st.integers(0, 2**32))
    def prop(i, seed):
        data = mutate(seeds[i], random.Random(seed), text=t.text)
        problem = check(t, data, folder)
        assert problem is None, f"{name}: {problem} (seed file {i}, mutation seed {seed})"

    prop()
