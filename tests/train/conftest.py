"""Fixtures for the trainer tests."""

from __future__ import annotations

import pytest

from tests.train.helpers import Corpus, write_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """16 training utterances (4 batches of 4) and 4 cv utterances of 0.3-0.6 s noise."""
    return write_corpus(tmp_path_factory.mktemp("corpus"), 16)
