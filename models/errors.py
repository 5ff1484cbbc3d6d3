"""Errors the registry raises; each str() is a sentence a user can act on.

Sentences name models by what users see (``ModelSpec.name``), never by a host path; the
``model_id`` attribute and the log keep the details.
"""

from __future__ import annotations


class ModelError(Exception):
    """Base class: ``str(error)`` is a complete, user-facing sentence."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ModelUnavailable(ModelError):
    """The model cannot be used (not found, not local while offline, failed to load, unloaded)."""

    def __init__(self, message: str, *, model_id: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.model_id = model_id
        self.reason = reason or message


class EngineUnavailable(ModelUnavailable):
    """A remote inference engine failed or refused a request; ``host`` is where it is (what
    users see) and ``retry_in_s``, when set, how long until the bot tries it again."""

    def __init__(
        self,
        message: str,
        *,
        host: str,
        retry_in_s: float | None = None,
        model_id: str = "",
        reason: str = "",
    ) -> None:
        super().__init__(message, model_id=model_id, reason=reason)
        self.host = host
        self.retry_in_s = retry_in_s


class ModelLoading(ModelError):
    """The model is still loading; the caller should try again shortly."""

    def __init__(self, model_id: str, *, waited_s: float = 0.0, name: str | None = None) -> None:
        super().__init__(f"The model {name or model_id} is still loading; try again in a minute.")
        self.model_id = model_id
        self.waited_s = waited_s


class ModelsBusy(ModelError):
    """Every slot for servers' own models is in use by running requests; try again shortly."""


class QueueFull(ModelError):
    """Too many requests are waiting for this model; carries the queue position and an ETA."""

    def __init__(self, model_id: str, *, position: int, eta_s: float) -> None:
        eta = max(1, round(eta_s))
        super().__init__(
            f"The model {model_id} is busy ({position - 1} requests ahead of yours); "
            f"try again in about {eta} s."
        )
        self.model_id = model_id
        self.position = position
        self.eta_s = eta_s


class InvalidInput(ModelError):
    """The input cannot be processed (empty, malformed); only this request fails."""


class InvalidModelRef(ModelError):
    """A model reference is neither a valid hub id nor a local folder under an allowed root."""


class ModelFolderMissing(InvalidModelRef):
    """A local model folder (under an allowed root) does not exist."""
