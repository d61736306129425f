"""Shared fixtures: a private HF_HOME per test session, so tests never read or write a learner's real cache."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def standin_root(tmp_path_factory):
    """A folder where stand-ins are built once per test session."""
    return tmp_path_factory.mktemp("standins")
