"""What users call a model: never a host path (no torch import here)."""

from __future__ import annotations

from pathlib import PurePath

from models.refs import is_local_ref


def public_name(model_id: str, display_name: str | None = None) -> str:
    """``display_name`` when given (e.g. "fine-tuned job #12"), else a local folder's name (its
    last part, never the path), else the hub id."""
    if display_name and display_name.strip():
        return display_name.strip()
    ref = model_id.strip()
    if is_local_ref(ref):
        return PurePath(ref.replace("\\", "/")).name or "a local model"
    return ref
