"""How admission splits a sweep into chunks: by trial count and by the loss history a chunk holds."""

import pytest

from jobs.admission import chunk_spans
from jobs.settings import Settings


@pytest.mark.parametrize(
    ("epochs", "spans"),
    [
        ([10] * 10, [(0, 4), (4, 8), (8, 10)]),  # four trials a chunk at most
        ([1, 1, 1, 60, 1, 1], [(0, 3), (3, 4), (4, 6)]),  # 4 x 60 entries would pass 100
        ([200, 1, 1], [(0, 1), (1, 3)]),  # a run longer than the limit still gets its chunk
        ([5], [(0, 1)]),
    ],
)
def test_chunks_bound_trials_and_history(epochs: list[int], spans: list[tuple[int, int]]) -> None:
    assert chunk_spans(epochs, Settings(max_chunk_history=100, sweep_chunk_trials=4)) == spans
