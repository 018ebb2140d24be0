"""The guide's examples (examples/guide_examples.py) do what the guide says, in every era."""

from __future__ import annotations

import pytest

from guide_examples import EXAMPLES  # examples/, on pytest's pythonpath (pyproject.toml)

pytestmark = pytest.mark.valgrind


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.__name__)
def test_example(era, example):
    if example.raises is not None:
        with pytest.raises(example.raises):
            example(era)
    else:
        assert example(era) == example.returns
