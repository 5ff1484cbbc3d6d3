"""Load a model and tokenizer for a spec: local folders directly, hub ids with a fail-fast probe."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import ModelUnavailable
from models.refs import ModelRef
from models.specs import ModelSpec
from models.tasks import task_info

log = logging.getLogger(__name__)

# Seconds allowed for the one hub request made before downloading; transformers' own download
# path retries for most of a minute when the hub is unreachable.
HUB_PROBE_TIMEOUT_S = 5.0


@dataclass
class LoadedModel:
    """A model ready to serve; only the device's executor thread may use ``model``/``tokenizer``."""

    spec: ModelSpec
    ref: ModelRef
    model: Any
    tokenizer: Any
    load_seconds: float


def hub_offline() -> bool:
    """Whether downloads are disabled (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}:
            return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover - installed with transformers
        return False


def _how_to_fix(spec: ModelSpec) -> str:
    return (
        f"set {task_info(spec.task).setting} to a local model folder, or download the model once "
        "with network access (it is then read from the Hugging Face cache, also with "
        "HF_HUB_OFFLINE=1)"
    )


def _is_network_error(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(
        names
        & {
            "ConnectError",
            "ConnectionError",
            "NetworkError",
            "TransportError",
            "TimeoutException",
            "Timeout",
            "TimeoutError",
            "ConnectTimeout",
            "ReadTimeout",
            "OfflineModeIsEnabled",
        }
    )


def probe_hub(spec: ModelSpec, *, timeout_s: float = HUB_PROBE_TIMEOUT_S) -> list[str]:
    """Ask the hub about ``spec.model_id`` once, with a short timeout; return its file names.

    Raises :class:`ModelUnavailable` naming the model and the fix when it does not exist, is
    gated, or the hub cannot be reached.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    model_id = spec.model_id
    name = spec.name
    try:
        info = HfApi().model_info(model_id, revision=spec.revision, timeout=timeout_s)
    except GatedRepoError:
        raise ModelUnavailable(
            f"The model {name} is gated on the Hugging Face hub: accept its terms and log in "
            f"(HF_TOKEN), or {_how_to_fix(spec)}.",
            model_id=model_id,
            reason="gated on the hub",
        ) from None
    except RevisionNotFoundError:
        raise ModelUnavailable(
            f"The model {name} has no revision {spec.revision!r} on the Hugging Face hub.",
            model_id=model_id,
            reason=f"revision {spec.revision} not found",
        ) from None
    except RepositoryNotFoundError:
        raise ModelUnavailable(
            f"There is no model {name} on the Hugging Face hub (or it is private); "
            f"check the name, or {_how_to_fix(spec)}.",
            model_id=model_id,
            reason="not found on the hub",
        ) from None
    except Exception as exc:
        if _is_network_error(exc) or isinstance(exc, OSError):
            raise ModelUnavailable(
                f"The model {name} is not on this machine and the Hugging Face hub cannot be "
                f"reached ({type(exc).__name__}); {_how_to_fix(spec)}.",
                model_id=model_id,
                reason="hub unreachable",
            ) from None
        log.warning("the hub refused %s: %s", model_id, exc)
        raise ModelUnavailable(
            f"The Hugging Face hub refused {name} ({type(exc).__name__}); {_how_to_fix(spec)}.",
            model_id=model_id,
            reason=f"hub error: {type(exc).__name__}",
        ) from None
    return [sibling.rfilename for sibling in (info.siblings or [])]


# transformers' from_pretrained switches process-wide state while it loads (it replaces
# PreTrainedModel.tie_weights and init_weights on the class, and torch's default dtype) and puts
# it back after: two loads at once in one process can leave tying switched off for good (seen
# with two registries in one process, as two shards or a test bot beside another). One at a time.
_LOADING = threading.Lock()


def _dtype(spec: ModelSpec) -> Any:
    if spec.dtype == "auto":
        return "auto"
    import torch

    return getattr(torch, spec.dtype)


def _from_pretrained(
    spec: ModelSpec, location: str, *, local_only: bool, use_safetensors: bool | None
) -> tuple[Any, Any]:
    import transformers

    auto_model = getattr(transformers, task_info(spec.task).auto_model)
    common: dict[str, Any] = {
        "revision": spec.revision,
        "trust_remote_code": False,
        "local_files_only": local_only,
    }
    if spec.gguf_file:
        common["gguf_file"] = spec.gguf_file
    tokenizer = transformers.AutoTokenizer.from_pretrained(location, **common)
    model_kwargs: dict[str, Any] = {**common, "dtype": _dtype(spec)}
    if use_safetensors and not spec.gguf_file:
        model_kwargs["use_safetensors"] = True
    with _LOADING:
        model, info = auto_model.from_pretrained(location, output_loading_info=True, **model_kwargs)
    missing = info.get("missing_keys") if isinstance(info, dict) else None
    if missing:
        # A base checkpoint loaded for a task gets a fresh, untrained head: it runs, but its
        # answers are noise. Worth a warning, not a refusal (benchmarks and tests rely on it).
        log.warning(
            "%s: %d weights were newly initialised for %s (e.g. %s); outputs are untrained",
            spec.model_id,
            len(missing),
            spec.task,
            sorted(missing)[:3],
        )
    return model, tokenizer


def _check_tokenizer(spec: ModelSpec, tokenizer: Any) -> None:
    if task_info(spec.task).needs_fast_tokenizer and not getattr(tokenizer, "is_fast", False):
        raise ModelUnavailable(
            f"The model {spec.name} has no fast tokenizer (tokenizer.json), which {spec.task} "
            "needs for character offsets; use a checkpoint that ships one.",
            model_id=spec.model_id,
            reason="no fast tokenizer",
        )


def load_model(spec: ModelSpec, ref: ModelRef) -> LoadedModel:
    """Load ``spec`` (blocking: call it off the event loop). Never downloads while offline."""
    started = time.perf_counter()
    try:
        if ref.kind == "local":
            folder = Path(ref.location)
            if spec.gguf_file and not (folder / spec.gguf_file).is_file():
                raise ModelUnavailable(
                    f"The model {spec.name} has no file {spec.gguf_file} in its folder.",
                    model_id=spec.model_id,
                    reason="GGUF file missing",
                )
            if not spec.gguf_file and not (folder / "config.json").is_file():
                raise ModelUnavailable(
                    f"The folder of the model {spec.name} has no config.json (it was removed, "
                    "or is not a transformers model folder saved with save_pretrained).",
                    model_id=spec.model_id,
                    reason="no config.json",
                )
            has_safetensors = any(folder.glob("*.safetensors"))
            model, tokenizer = _from_pretrained(
                spec, ref.location, local_only=True, use_safetensors=has_safetensors
            )
        else:
            try:
                # The Hugging Face cache first: no network involved.
                model, tokenizer = _from_pretrained(
                    spec, ref.location, local_only=True, use_safetensors=None
                )
            except OSError:
                if hub_offline():
                    raise ModelUnavailable(
                        f"The model {spec.name} is not in this machine's Hugging Face cache "
                        f"and downloads are off (HF_HUB_OFFLINE=1); {_how_to_fix(spec)}.",
                        model_id=spec.model_id,
                        reason="not cached and HF_HUB_OFFLINE=1",
                    ) from None
                files = probe_hub(spec)
                has_safetensors = any(name.endswith(".safetensors") for name in files)
                log.info("downloading %s from the Hugging Face hub", spec.model_id)
                model, tokenizer = _from_pretrained(
                    spec, ref.location, local_only=False, use_safetensors=has_safetensors
                )
    except ModelUnavailable:
        raise
    except Exception as exc:
        # The exception's text names files and folders: it goes to the log, not to users.
        log.warning("loading %s for %s failed", spec.model_id, spec.task, exc_info=True)
        raise ModelUnavailable(
            f"The model {spec.name} could not be loaded for {spec.task} ({type(exc).__name__}: "
            "its files are unreadable or incomplete); the bot's log has the details.",
            model_id=spec.model_id,
            reason=f"its files could not be loaded ({type(exc).__name__})",
        ) from exc
    _check_tokenizer(spec, tokenizer)
    model.eval()
    if spec.device != "cpu":
        model.to(spec.device)
    if spec.runtime != "torch":
        from models.onnx_runtime import prepare_runtime

        # Converted once (cached), checked against torch; torch serves when it cannot.
        model = prepare_runtime(spec, model, tokenizer)
    seconds = time.perf_counter() - started
    log.info("loaded %s for %s in %.1f s", spec.model_id, spec.task, seconds)
    return LoadedModel(spec=spec, ref=ref, model=model, tokenizer=tokenizer, load_seconds=seconds)
