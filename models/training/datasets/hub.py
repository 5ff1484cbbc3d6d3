"""Load a Hugging Face hub dataset split, bounded, and validate it like a file of the same task.

Only hub datasets are read here. The name must be a hub id, must not name anything in the
working directory (``datasets.load_dataset`` would load a local folder of that name) and must
not be one of the library's packaged builders (``csv``, ``json``, ``text``...), which read local
files. The bot runs this in an isolated process whose working directory is empty, and the
training worker in a folder holding nothing either; the check here is the second line.

Sizes are checked before anything downloads: from the hub's metadata (the dataset card's split
sizes) when the hub answers, refusing a split with more than ``max_rows`` rows or ``max_bytes``
bytes; then rows are read by streaming, at most ``max_rows`` + 1, so a split the card says
nothing about is bounded too. Offline (``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``) only the
local cache is read, and the same row bound applies.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.refs import is_hub_id

# The task table imports this package's parsers: take the module, not its names, so that
# either may be imported first.
from models.training import tasks
from models.training.datasets.types import (
    ColumnSpec,
    DataFormat,
    DataLimits,
    DatasetError,
    Location,
    ParsedDataset,
    Row,
    TrainTask,
    check_row_limit,
)

logger = logging.getLogger(__name__)

METADATA_TIMEOUT_S = 15.0
# Config and split names: what the hub uses ("sst2", "train", "validation_matched", "en-fr").
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", re.ASCII)
# Builders of the datasets library that read local files (used when the library won't say).
_LOCAL_BUILDERS = frozenset(
    {
        "arrow", "audiofolder", "cache", "csv", "eval", "generator", "hdf5", "imagefolder",
        "json", "lance", "niftifolder", "pandas", "parquet", "pdffolder", "spark", "sql",
        "text", "videofolder", "webdataset", "xml",
    }
)  # fmt: skip


@dataclass(frozen=True)
class SplitSize:
    """A split's size as the hub's dataset card states it (None: not stated)."""

    num_examples: int | None
    num_bytes: int | None


def check_hub_name_syntax(name: str, config: str | None = None, split: str = "train") -> None:
    """Raise :class:`DatasetError` unless ``name``, ``config`` and ``split`` are written as a hub
    dataset's (no path, URL or scheme; not a file format). Cheap: no import, no file access."""
    if "://" in name or not is_hub_id(name):
        raise DatasetError(
            f"{name!r} is not a Hugging Face hub dataset id (like 'imdb' or 'owner/name'); "
            "links, paths and other schemes are not accepted."
        )
    for value, what in ((config, "config"), (split, "split")):
        if value is not None and not NAME_RE.match(value):
            raise DatasetError(f"{value!r} is not a valid {what} name.")
    if name.lower() in _LOCAL_BUILDERS:
        raise DatasetError(_BUILDER_REFUSAL.format(name=name))


_BUILDER_REFUSAL = "{name!r} is a file format, not a hub dataset; name a dataset like 'imdb'."


def check_hub_name(name: str, config: str | None = None, split: str = "train") -> None:
    """Raise :class:`DatasetError` unless ``name`` can only mean a hub dataset here."""
    check_hub_name_syntax(name, config, split)
    if name.lower() in _packaged_builders():
        raise DatasetError(_BUILDER_REFUSAL.format(name=name))
    if os.path.lexists(name) or os.path.lexists(name.split("/")[0]):
        # Only possible outside the empty folder hub datasets are loaded from.
        raise DatasetError(f"{name!r} would be read from this machine, not the hub; refused.")


def _packaged_builders() -> frozenset[str]:
    try:
        from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES
    except ImportError:  # an older or newer datasets: fall back to the known list
        return _LOCAL_BUILDERS
    return _LOCAL_BUILDERS | frozenset(name.lower() for name in _PACKAGED_DATASETS_MODULES)


def split_size_from_card(
    card: Mapping[str, Any], config: str | None, split: str
) -> SplitSize | None:
    """The split's size from a dataset card's ``dataset_info`` (one config, or a list of them)."""
    info = card.get("dataset_info")
    entries = [info] if isinstance(info, Mapping) else list(info or [])
    entries = [e for e in entries if isinstance(e, Mapping)]
    wanted = config or "default"
    chosen = [e for e in entries if e.get("config_name", "default") == wanted]
    if not chosen and config is None and len(entries) == 1:
        chosen = entries
    if not chosen:
        return None
    for entry in chosen[0].get("splits") or []:
        if isinstance(entry, Mapping) and entry.get("name") == split:
            return SplitSize(_count(entry.get("num_examples")), _count(entry.get("num_bytes")))
    return None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def fetch_split_size(name: str, config: str | None, split: str) -> SplitSize | None:
    """The split's size from the hub's metadata; None when offline, unreachable or unstated."""
    if _offline():
        return None
    try:
        from huggingface_hub import HfApi

        info = HfApi().dataset_info(name, timeout=METADATA_TIMEOUT_S)
    except Exception as exc:  # unreachable, not found, gated: streaming decides
        logger.info("no hub metadata for dataset %s: %r", name, exc)
        return None
    card = info.card_data.to_dict() if info.card_data is not None else {}
    return split_size_from_card(card, config, split)


def check_split_size(size: SplitSize | None, source: str, limits: DataLimits) -> None:
    """Refuse a split whose stated size is over the limits."""
    if size is None:
        return
    if limits.max_rows is not None and size.num_examples is not None:
        if size.num_examples > limits.max_rows:
            raise DatasetError(
                f"{source} has {size.num_examples:,} rows; this bot reads at most "
                f"{limits.max_rows:,} from one split. Pick a smaller split or dataset."
            )
    if limits.max_bytes is not None and size.num_bytes is not None:
        if size.num_bytes > limits.max_bytes:
            raise DatasetError(
                f"{source} is {size.num_bytes / 1e6:,.0f} MB; this bot reads at most "
                f"{limits.max_bytes / 1e6:,.0f} MB from one split. Pick a smaller one."
            )


def _offline() -> bool:
    return any(
        os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def load_hub_dataset(
    name: str,
    task: TrainTask | str,
    *,
    config: str | None = None,
    split: str = "train",
    columns: ColumnSpec | None = None,
    limits: DataLimits | None = None,
) -> ParsedDataset:
    """Load a hub dataset split within ``limits``; class-label ids become their names."""
    task = TrainTask.parse(task) if isinstance(task, str) else task
    limits = limits or DataLimits()
    check_hub_name(name, config, split)
    source = f"{name}{'/' + config if config else ''} [{split}]"
    check_split_size(fetch_split_size(name, config, split), source, limits)
    import datasets  # deferred: heavy, and only this path needs it

    try:
        if _offline():  # only the local cache: nothing downloads
            ds = datasets.load_dataset(name, config, split=split)
        else:  # only the rows read are fetched
            ds = datasets.load_dataset(name, config, split=split, streaming=True)
        features = getattr(ds, "features", {}) or {}
        class_names = {
            column: names
            for column, feature in features.items()
            if (names := _class_names(feature))
        }
        rows: list[Row] = []
        stop = None if limits.max_rows is None else limits.max_rows + 1
        for i, values in enumerate(itertools.islice(ds, stop), start=1):
            where = Location(source, row=i)
            check_row_limit(i, limits.max_rows, where)
            row = dict(values)
            for column, names in class_names.items():
                if column in row:
                    row[column] = _named(row[column], names)
            rows.append((where, row))
    except DatasetError:
        raise
    except Exception as exc:  # the library raises many unrelated types for "not found"
        logger.info("hub dataset %s failed to load: %r", source, exc)
        raise DatasetError(_load_failure(source, exc)) from exc
    header = list(features) if features else (list(rows[0][1]) if rows else [])
    spec = tasks.task_spec(task)
    return spec.parse_rows(rows, header, DataFormat.HUB, source, columns or ColumnSpec())


_AVAILABLE_SPLITS_RE = re.compile(r"[Aa]vailable splits: (\[[^\]]{0,300}\])")


def _load_failure(source: str, exc: Exception) -> str:
    """The sentence for a load failure: library messages may hold local paths, so only the
    available splits (when the split was wrong) are taken from it."""
    found = _AVAILABLE_SPLITS_RE.search(str(exc))
    if found:
        return f"Couldn't load the hub dataset {source}: no such split; available: {found[1]}."
    return (
        f"Couldn't load the hub dataset {source}; check its name, config and split "
        "(or the hub is unreachable from this bot)."
    )


def _class_names(feature: Any) -> list[str] | None:
    """The names of a ClassLabel column, or of a Sequence of ClassLabel."""
    inner = getattr(feature, "feature", feature)
    names = getattr(inner, "names", None)
    return list(names) if names else None


def _named(value: Any, names: list[str]) -> Any:
    if isinstance(value, list):
        return [names[v] if isinstance(v, int) and 0 <= v < len(names) else v for v in value]
    if isinstance(value, int) and 0 <= value < len(names):
        return names[value]
    return value
