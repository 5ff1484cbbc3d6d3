"""Test-wide configuration: never reach the network, never read the developer's .env."""

from __future__ import annotations

import os

# Set before transformers / huggingface_hub are imported anywhere in the session.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The bot's settings come from each test, never the environment; the test harness's own
# variables (where the real data sets and downloaded artefacts are) stay.
_TEST_HARNESS_VARIABLES = {"HFCORD_SHARED_DATA", "HFCORD_TEST_CACHE"}
for _name in list(os.environ):
    if (
        _name.startswith("HFCORD_") and _name not in _TEST_HARNESS_VARIABLES
    ) or _name == "DISCORD_TOKEN":
        del os.environ[_name]

pytest_plugins = ["tests.support.fixtures"]
