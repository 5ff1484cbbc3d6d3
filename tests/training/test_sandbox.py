"""models.training.sandbox: what a child started for a server inherits, and that it dies with
the process that started it (issue 10, items 6 and 7)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from models.training.sandbox import PARENT_PID_VARIABLE, child_environment
from tests.support.waiting import wait_until

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# A middle process (standing for the bot) starts a child that binds itself to it, prints the
# child's pid once bound, then waits to be killed. ``WATCH_ONLY`` hides prctl from the child.
MIDDLE = r"""
import os, subprocess, sys, time
from models.training.sandbox import child_environment
child_code = (
    "import sys, time\n"
    + ("sys.platform = 'elsewhere'\n" if os.environ.get("WATCH_ONLY") else "")
    + "from models.training.sandbox import bind_to_parent\n"
    "bind_to_parent()\n"
    "print('bound', flush=True)\n"
    "time.sleep(600)\n"
)
env = child_environment(extra={"PYTHONPATH": os.environ["PYTHONPATH"]})
child = subprocess.Popen(
    [sys.executable, "-c", child_code], env=env, stdout=subprocess.PIPE, start_new_session=True
)
assert child.stdout.readline().strip() == b"bound"
print(child.pid, flush=True)
time.sleep(600)
"""


def test_the_environment_is_an_allowlist() -> None:
    source = {
        "PATH": "/usr/bin",
        "HOME": "/home/bot",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HF_HOME": "/cache/hf",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "2",
        "DISCORD_TOKEN": "secret",
        "HFCORD_GENERATION_API_KEY": "secret",
        "HFCORD_DATA_DIR": "/srv/data",
        "HF_TOKEN": "hf_secret",
        "HUGGING_FACE_HUB_TOKEN": "hf_secret",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "OPENAI_API_KEY": "secret",
    }
    env = child_environment(source, extra={"PYTHONPATH": "/app"})
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/home/bot",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HF_HOME": "/cache/hf",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "2",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",  # no token read from disk either
        "PYTHONPATH": "/app",
        PARENT_PID_VARIABLE: str(os.getpid()),
    }


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its exit status waits to be collected


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("watch_only", [False, True], ids=["prctl", "parent-watch"])
async def test_a_child_dies_with_its_parent(watch_only: bool) -> None:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    if watch_only:
        env["WATCH_ONLY"] = "1"
    middle = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", MIDDLE),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    child: int | None = None
    try:
        assert middle.stdout is not None
        child = int(await asyncio.wait_for(middle.stdout.readline(), 60))
        assert _alive(child)
        middle.kill()  # SIGKILL: the parent gets no chance to clean up
        await middle.wait()
        await wait_until(lambda: not _alive(child), timeout=10, what="the child to die")
    finally:
        if middle.returncode is None:
            middle.kill()
            await middle.wait()
        if child is not None and _alive(child):
            os.kill(child, signal.SIGKILL)


def test_only_the_operators_own_tools_pass_the_hub_token() -> None:
    source = {"PATH": "/usr/bin", "HF_TOKEN": "hf_operator", "DISCORD_TOKEN": "secret"}
    env = child_environment(source, hub_token=True)
    assert env["HF_TOKEN"] == "hf_operator" and "HF_HUB_DISABLE_IMPLICIT_TOKEN" not in env
    assert "DISCORD_TOKEN" not in env
