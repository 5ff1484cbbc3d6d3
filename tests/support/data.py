"""The real public data sets the tests read at run time (never copied into the repository).

They live in a folder beside the checkout (``../shared/data``) or wherever ``HFCORD_SHARED_DATA``
points. A clone without them still runs the test suite: tests that need them skip, saying how to
get them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

HOW_TO_GET = (
    "the real data sets (SST-2, MRPC, CoNLL-2003, SQuAD) are not at {path}: "
    "set HFCORD_SHARED_DATA to a folder holding sst2/, mrpc/, conll2003/ and squad/ "
    "(e.g. saved from the Hugging Face hub with `datasets` where it is reachable)"
)


def shared_data_dir() -> Path:
    """The read-only data folder (HFCORD_SHARED_DATA, default ``<repo>/../shared/data``)."""
    return Path(os.environ.get("HFCORD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_file(*parts: str) -> Path:
    """A file of the shared data, or skip the calling test with how to get it."""
    path = shared_data_dir().joinpath(*parts)
    if not path.is_file():
        pytest.skip(HOW_TO_GET.format(path=shared_data_dir()))
    return path


def require_shared_data() -> Path:
    """The shared data folder, or skip the calling test with how to get it."""
    shared_file("sst2", "train.tsv")
    return shared_data_dir()
