"""Validate model references: Hugging Face hub ids, or local folders under allowed roots."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from models.errors import InvalidModelRef, ModelFolderMissing

# The hub's own rule (huggingface_hub.utils.validate_repo_id): optional namespace, then a name;
# letters, digits, "-", "_", "."; no "--" or ".."; at most 96 characters.
_HUB_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?"
_HUB_ID_RE = re.compile(rf"^(?:{_HUB_PART}/)?{_HUB_PART}$", re.ASCII)
_REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$", re.ASCII)
_GGUF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}\.gguf$", re.ASCII)


@dataclass(frozen=True)
class ModelRef:
    """A validated reference: a hub id, a resolved local folder, or a model on a remote engine
    (``location`` is then the engine's base URL)."""

    kind: Literal["hub", "local", "engine"]
    location: str


def is_hub_id(ref: str) -> bool:
    """Whether ``ref`` is syntactically a hub repository id (``name`` or ``owner/name``)."""
    return (
        len(ref) <= 96
        and bool(_HUB_ID_RE.match(ref))
        and ".." not in ref
        and "--" not in ref
        and not ref.endswith(".git")
    )


def _looks_like_path(ref: str) -> bool:
    # Path syntax that no hub id has.
    return (
        ref.startswith(("/", "./", "../", "~", ".\\", "..\\"))
        or "\\" in ref
        or ref.count("/") > 1
        or ref in {".", ".."}
        or Path(ref).is_absolute()
    )


def is_local_ref(ref: str) -> bool:
    """Whether a model reference names a local folder rather than a Hugging Face hub id.

    The one rule for "local path or hub id?": path syntax (``/``, ``./``, ``~``, a backslash,
    more than one ``/``...) is local; a well-formed hub id is a hub id, unless a folder by that
    name exists relative to the working directory (transformers would load that folder).
    Anything else is neither (:func:`resolve_model_ref` refuses it) and counts as not local.
    """
    ref = ref.strip()
    if is_hub_id(ref):
        return Path(ref).exists()
    return bool(ref) and _looks_like_path(ref)


def validate_revision(revision: str | None) -> None:
    if revision is not None and (not _REVISION_RE.match(revision) or ".." in revision):
        raise InvalidModelRef(
            f"The revision {revision!r} is not a valid branch, tag or commit name."
        )


def validate_gguf_file(name: str | None) -> None:
    if name is not None and (not _GGUF_RE.match(name) or ".." in name):
        raise InvalidModelRef(
            f"The GGUF file {name!r} must be a plain file name ending in .gguf, "
            "inside the model's folder or repository."
        )


def _within(path: Path, roots: Sequence[Path]) -> bool:
    for root in roots:
        try:
            resolved_root = Path(root).expanduser().resolve()
        except OSError:
            continue
        if path == resolved_root or path.is_relative_to(resolved_root):
            return True
    return False


def resolve_model_ref(
    ref: str,
    allowed_roots: Sequence[Path],
    *,
    trusted: bool = False,
) -> ModelRef:
    """Check ``ref`` and say where the model comes from.

    A local folder must exist and, after resolving symlinks and ``..``, lie under one of
    ``allowed_roots`` (unless ``trusted``: the operator's own configuration). Anything else
    must be a well-formed hub id. A hub-id-looking ref that names an existing relative folder is
    treated as that folder, since transformers would load it, and so must pass the same checks.
    Raises :class:`InvalidModelRef` with a sentence saying what is wrong.
    """
    ref = ref.strip()
    if not ref or "\x00" in ref:
        raise InvalidModelRef("The model reference is empty; give a hub id or a local folder.")
    if not is_local_ref(ref):
        if is_hub_id(ref):
            return ModelRef("hub", ref)
        raise InvalidModelRef(
            f"{ref!r} is neither a Hugging Face model id (like 'owner/name') "
            "nor a path to a local model folder."
        )
    try:
        path = Path(os.path.expanduser(ref)).resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: symlink loop
        raise InvalidModelRef(f"The model path {ref!r} cannot be resolved ({exc}).") from None
    if not trusted and not _within(path, allowed_roots):
        roots = ", ".join(str(root) for root in allowed_roots) or "none configured"
        raise InvalidModelRef(
            f"The model path {ref!r} is outside the folders models may be loaded from "
            f"({roots}); move it under the data folder's models/ or add its folder to "
            "HFCORD_MODEL_ROOTS."
        )
    if not path.is_dir():
        raise ModelFolderMissing(f"The model folder {ref!r} does not exist.")
    return ModelRef("local", str(path))


# --------------------------------------------------------------------------- confinement
# What an untrusted user (a server admin in Discord) may name: checked here, with refusals that
# never say where folders are on this machine.

_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def has_scheme(ref: str) -> bool:
    """Whether ``ref`` starts like a URL or other scheme (``https:``, ``hf://``, ``file:``)."""
    return bool(_SCHEME_RE.match(ref.strip()))


def resolve_confined_folder(
    ref: str, roots: Sequence[Path], *, excluded: Sequence[Path] = ()
) -> Path:
    """The folder an absolute path names, if it lies under one of ``roots`` and under none of
    ``excluded`` once symlinks and ``..`` are resolved; else :class:`InvalidModelRef`.

    Relative paths are refused (they would depend on the working directory), and so is ``~``
    (it names the bot's home). Messages never name ``roots`` or ``excluded``.
    """
    ref = ref.strip()
    if not ref or "\x00" in ref:
        raise InvalidModelRef("The folder name is empty.")
    if not Path(ref).is_absolute():
        raise InvalidModelRef(
            f"{ref!r} is not an absolute path; give a local model folder as its full path."
        )
    try:
        path = Path(ref).resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        raise InvalidModelRef(f"The folder {ref!r} cannot be used.") from None
    if not _within(path, roots) or _within(path, excluded):
        raise InvalidModelRef(
            f"The folder {ref!r} is not one this bot's operator has made available for models."
        )
    if not path.is_dir():
        raise InvalidModelRef(f"The model folder {ref!r} does not exist.")
    return path
