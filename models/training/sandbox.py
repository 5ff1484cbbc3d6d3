"""Child processes started on behalf of a server: a minimal environment, death with the parent.

Training workers and isolated parsers run on what server admins send, so they get only what
they need: :func:`child_environment` passes an allowlist of variables (paths, locale, caches,
offline switches, thread counts, proxies), never the bot token, API keys or the hub token (a
server must not reach the operator's private or gated models), and turns off huggingface_hub's
use of a token stored on disk. :func:`bind_to_parent`, called first thing in the child, makes
the child die with the process that started it: Linux's ``PR_SET_PDEATHSIG`` (SIGKILL), plus a
thread watching the parent pid where that is not available or the parent died before the
child could ask. Stdlib only: the isolated parser imports it before anything else.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping

# The pid of the process that started the child, as the child should see it from getppid().
PARENT_PID_VARIABLE = "HFCORD_PARENT_PID"

# Exact names a child may inherit.
_ALLOWED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TEMP",
        "TMP",
        "PYTHONPATH",
        "PYTHONHASHSEED",
        "PYTHONIOENCODING",
        "PYTHONUTF8",
        "VIRTUAL_ENV",
        "LD_LIBRARY_PATH",
        "TOKENIZERS_PARALLELISM",
        "TRANSFORMERS_OFFLINE",
        "TRANSFORMERS_CACHE",
        "HF_HOME",
        "HF_HUB_CACHE",
        "HF_DATASETS_CACHE",
        "HF_ASSETS_CACHE",
        "HF_XET_CACHE",
        "HF_HUB_OFFLINE",
        "HF_DATASETS_OFFLINE",
        "HF_ENDPOINT",
        "HF_HUB_ETAG_TIMEOUT",
        "HF_HUB_DOWNLOAD_TIMEOUT",
        "HF_HUB_DISABLE_TELEMETRY",
        "HF_HUB_DISABLE_PROGRESS_BARS",
        "HF_HUB_DISABLE_SYMLINKS_WARNING",
        "HF_HUB_ENABLE_HF_TRANSFER",
        "TORCH_HOME",
        "XDG_CACHE_HOME",
        "MPLCONFIGDIR",
        "MPLBACKEND",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
        "CUDA_VISIBLE_DEVICES",
        "CUDA_DEVICE_ORDER",
        "PYTORCH_CUDA_ALLOC_CONF",
        "PYTORCH_ENABLE_MPS_FALLBACK",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
    }
)
_ALLOWED_PREFIXES = ("LC_",)
# Always set in a child working for a server: no hub token read from disk either.
_FORCED = {"HF_HUB_DISABLE_IMPLICIT_TOKEN": "1"}
_HUB_TOKEN_NAMES = frozenset({"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"})
_DEFAULTS = {"TOKENIZERS_PARALLELISM": "false"}

_PR_SET_PDEATHSIG = 1
WATCH_INTERVAL_S = 1.0


def child_environment(
    source: Mapping[str, str] | None = None,
    *,
    extra: Mapping[str, str] | None = None,
    hub_token: bool = False,
) -> dict[str, str]:
    """The environment for a child: the allowed variables of ``source`` (default: this
    process's), the forced ones, ``extra``, and this process's pid for :func:`bind_to_parent`.

    ``hub_token``: also the operator's hub token (``HF_TOKEN``, or the one stored on disk), for
    the operator's own tools only (`python -m bot finetune`), never for work a server asked for.
    """
    source = os.environ if source is None else source
    allowed = _ALLOWED_NAMES | (_HUB_TOKEN_NAMES if hub_token else frozenset())
    env = {
        name: value
        for name, value in source.items()
        if name in allowed or name.startswith(_ALLOWED_PREFIXES)
    }
    for name, value in _DEFAULTS.items():
        env.setdefault(name, value)
    if not hub_token:
        env.update(_FORCED)
    env.update(extra or {})
    env[PARENT_PID_VARIABLE] = str(os.getpid())
    return env


def bind_to_parent() -> None:
    """Die when the parent does (call first thing in a child started with `child_environment`).

    The kernel delivers SIGKILL when the parent ends (Linux); if the parent already ended
    before we asked, we end at once. A daemon thread also watches the parent pid, for systems
    without ``prctl``: when the parent is gone it kills this process's group (the child leads
    its own session) or, failing that, the process itself.
    """
    expected = _expected_parent()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if expected is None:
        return
    if os.getppid() != expected:
        _die()
    watcher = threading.Thread(
        target=_watch_parent, args=(expected,), name="hfcord-parent-watch", daemon=True
    )
    watcher.start()


def _expected_parent() -> int | None:
    value = os.environ.get(PARENT_PID_VARIABLE, "")
    return int(value) if value.isdigit() else None


def _watch_parent(expected: int) -> None:
    while True:
        time.sleep(WATCH_INTERVAL_S)
        if os.getppid() != expected:
            _die()


def _die() -> None:
    with contextlib.suppress(OSError):
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
    os._exit(1)
