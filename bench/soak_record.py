"""What the soak (``bench/soak.py``) records, and the rules its metrics follow.

- :class:`Sent`: one interaction a user sent, what it was and which bot process got it;
  :func:`is_eligible` says whether it counts for the acknowledgment metrics.
- :class:`ContextOp`: a /context write or clear; :func:`lost_contexts` compares the writes
  confirmed before the kill with the contexts found after the restart.
- :func:`error_records`: ERROR and CRITICAL records of a bot log.
- Reading the bot's database (read-only) and finding its training processes (/proc).
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import re
import signal
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.sim import SimInteraction

ACK_DEADLINE_S = 3.0
KILLED_RUN = 1  # the first bot process is the one killed
TERMINAL = {"completed", "failed", "cancelled", "interrupted"}
ERROR_MARKERS = ("error id", "Something went wrong")
ERROR_ID_IN_REPLY = re.compile(r"error id `([0-9a-f]+)`")
ERROR_ID_IN_LOG = re.compile(r"error ([0-9a-f]+) in command")
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (\w+)\s+([^:\s]+)?")
JOB_IN_REPLY = re.compile(r"job \*\*#(\d+)\*\*")
# What the bot says when a context write or clear took effect (see cogs/qa.py).
CONFIRMS = {
    "set": "Context set",
    "upload": "Context set",
    "append": "Added.",
    "clear": "is cleared",
}


@dataclass
class Sent:
    """One interaction a user sent, what it was, and which bot run it went to."""

    inter: SimInteraction
    action: str
    run: int | None  # 1 before the kill, 2 after; None when no bot was up


@dataclass
class ContextOp:
    kind: str  # set, append, upload, clear
    channel_id: int
    marker: str | None  # in the text written (None: a hostile text without one, or a clear)
    inter: SimInteraction

    def state(self) -> str:
        """ "confirmed" (the bot said it took effect), "answered" (it said something else,
        e.g. a refusal) or "pending" (no answer yet)."""
        live = [m for m in self.inter.messages if not m.deleted]
        if any(CONFIRMS[self.kind] in m.content for m in live):
            return "confirmed"
        if any(m.content and not m.loading for m in live):
            return "answered"
        return "pending"


@dataclass
class Ledger:
    sent: list[Sent] = field(default_factory=list)
    actions: collections.Counter[str] = field(default_factory=collections.Counter)
    client_refused: collections.Counter[str] = field(default_factory=collections.Counter)
    context_ops: list[ContextOp] = field(default_factory=list)
    known_jobs: dict[int, int] = field(default_factory=dict)  # job id -> guild id
    markers: int = 0
    problems: list[str] = field(default_factory=list)

    def new_marker(self, seed: int) -> str:
        self.markers += 1
        return f"soakctx{seed}x{self.markers:05d}"

    def note_jobs(self, inter: SimInteraction) -> None:
        for match in JOB_IN_REPLY.finditer(inter.text):
            if inter.guild is not None:
                self.known_jobs.setdefault(int(match.group(1)), inter.guild.id)


# --------------------------------------------------------------------------- the database


def read_rows(db_path: Path, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows from the bot's database, opened read-only (the bot may be writing)."""
    if not db_path.is_file():
        return []
    with contextlib.closing(
        sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    ) as conn:
        return conn.execute(query, params).fetchall()


def read_jobs(db_path: Path, guild_ids: Iterable[int]) -> dict[int, tuple[int, str, int | None]]:
    """This run's jobs: id -> (guild id, status, step)."""
    ids = list(guild_ids)
    marks = ",".join("?" * len(ids))
    rows = read_rows(
        db_path,
        f"SELECT id, guild_id, status, step FROM finetune_jobs WHERE guild_id IN ({marks})",
        ids,
    )
    return {int(r[0]): (int(r[1]), str(r[2]), r[3]) for r in rows}


def read_job_refs(db_path: Path, guild_ids: Iterable[int]) -> list[tuple[int, int, str, str]]:
    """This run's jobs as :func:`foreign_refs` takes them: (id, guild id, base model, params)."""
    ids = list(guild_ids)
    marks = ",".join("?" * len(ids))
    query = (
        f"SELECT id, guild_id, base_model, params FROM finetune_jobs WHERE guild_id IN ({marks})"
    )
    return [(int(r[0]), int(r[1]), str(r[2]), str(r[3])) for r in read_rows(db_path, query, ids)]


def read_promotions(db_path: Path, guild_ids: Iterable[int]) -> dict[int, set[str]]:
    """guild id -> the tasks a promoted model serves there (its newest promotion not rolled
    back, as the bot reads them)."""
    ids = list(guild_ids)
    marks = ",".join("?" * len(ids))
    query = f"""
        SELECT DISTINCT guild_id, task FROM guild_models
        WHERE rolled_back_at IS NULL AND guild_id IN ({marks})
    """
    found: dict[int, set[str]] = collections.defaultdict(set)
    for guild_id, task in read_rows(db_path, query, ids):
        found[int(guild_id)].add(str(task))
    return dict(found)


def read_contexts(db_path: Path, channel_ids: Iterable[int]) -> dict[int, str]:
    """Each channel's documents, their texts joined (a channel's context is all of them)."""
    ids = list(channel_ids)
    marks = ",".join("?" * len(ids))
    query = f"""
        SELECT channel_id, group_concat(body, char(10)) FROM documents
        WHERE channel_id IN ({marks}) GROUP BY channel_id
    """
    rows = read_rows(db_path, query, ids)
    return {int(r[0]): str(r[1]) for r in rows}


# ---------------------------------------------------------------------- worker processes


def worker_pids(jobs_dir: Path) -> list[int]:
    """Live training processes on this data folder's jobs (by command line; Linux /proc)."""
    needle = str(jobs_dir).encode() + b"/"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg.startswith(needle) for arg in args):
            found.append(int(entry.name))
    return found


def vm_hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text(errors="replace").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def kill_workers(pids: Iterable[int], jobs_dir: Path) -> None:
    """SIGKILL training processes this soak caused, checking each pid still runs one."""
    alive = set(worker_pids(jobs_dir))
    for pid in pids:
        if pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# ----------------------------------------------------------------------------- the metrics


def lost_contexts(
    ops: list[ContextOp], states: dict[int, str], contexts: dict[int, str]
) -> tuple[int, list[str]]:
    """(channels checked, descriptions of the lost ones): channels whose last write confirmed
    before the kill (``states``: ``id(op)`` -> its state at the kill) is not in their context
    now (``contexts``: channel id -> body). A write or clear still pending at the kill may have
    replaced it: its result is accepted too."""
    by_channel: dict[int, list[ContextOp]] = collections.defaultdict(list)
    for op in ops:
        by_channel[op.channel_id].append(op)
    checked = 0
    lost = []
    for channel_id, channel_ops in by_channel.items():
        confirmed = [i for i, op in enumerate(channel_ops) if states[id(op)] == "confirmed"]
        if not confirmed:
            continue
        op = channel_ops[confirmed[-1]]
        if op.kind == "clear" or op.marker is None:
            continue
        checked += 1
        body = contexts.get(channel_id)
        if body is not None and op.marker in body:
            continue
        pending = [p for p in channel_ops[confirmed[-1] + 1 :] if states[id(p)] == "pending"]
        if any(
            (p.kind == "clear" and body is None)
            or (p.kind in ("set", "upload") and p.marker and body and p.marker in body)
            for p in pending
        ):
            continue
        now = "no context" if body is None else f"a context without {op.marker}"
        lost.append(f"channel {channel_id}: /context {op.kind} confirmed, then {now}")
    return checked, lost


def foreign_refs(jobs: Sequence[tuple[int, int, str, str]], data_dir: Path, cwd: Path) -> list[str]:
    """The jobs (id, guild id, base model, params JSON) recorded although Discord named a base
    model or dataset it must not reach (issue 10, item 1): another server's model folder or
    any other folder in the data folder, a dataset given as a local path, a URL or a scheme.
    Relative paths are the bot's (its working folder is ``cwd``)."""
    guild_of = {job_id: guild_id for job_id, guild_id, _, _ in jobs}
    models = (data_dir / "models").resolve()
    found = []
    for job_id, guild_id, base_model, params_json in jobs:
        problems = []
        if _looks_local(base_model):
            path = (cwd / Path(base_model).expanduser()).resolve()
            if path.is_relative_to(models) and path != models:
                first = path.relative_to(models).parts[0]
                owner = guild_of.get(int(first)) if first.isdigit() else None
                if owner != guild_id:
                    problems.append(f"base model {base_model}: another server's model")
            elif path.is_relative_to(data_dir.resolve()):
                problems.append(f"base model {base_model}: inside the data folder")
        elif _has_scheme(base_model):
            problems.append(f"base model {base_model}: a URL or scheme")
        try:
            params = json.loads(params_json or "{}")
        except ValueError:
            params = {}
        for role in ("train", "validation"):
            source = params.get(role) if isinstance(params, dict) else None
            name = source.get("hub_name") if isinstance(source, dict) else None
            if isinstance(name, str) and (_looks_local(name) or _has_scheme(name)):
                problems.append(f"{role} dataset {name}: not a hub dataset id")
        if problems:
            found.append(f"job {job_id}: " + "; ".join(problems))
    return found


def _looks_local(ref: str) -> bool:
    return ref.startswith(("/", ".", "~"))


def _has_scheme(ref: str) -> bool:
    return "://" in ref or ref.lower().startswith(("hf:", "file:"))


def is_eligible(sent: Sent, kill_clock: float | None) -> bool:
    """Sent while a bot was up, and not cut off by the kill: the killed bot had its 3 s, or
    acknowledged the interaction before it died."""
    if sent.run is None:
        return False
    if sent.run != KILLED_RUN or kill_clock is None:
        return True
    inter = sent.inter
    if inter.created_at <= kill_clock - ACK_DEADLINE_S:
        return True
    return inter.acknowledged_at is not None and inter.acknowledged_at <= kill_clock


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def error_records(log_text: str, known_ids: Iterable[str] = ()) -> list[str]:
    """ERROR and CRITICAL records (with their traceback lines) of a bot log, except those that
    log one of ``known_ids`` (an error id a user was shown, counted already)."""
    records: list[str] = []
    current: list[str] | None = None
    for line in log_text.splitlines():
        match = LOG_RECORD.match(line)
        if match:
            if current is not None:
                records.append("\n".join(current))
            current = [line] if match.group(1) in ("ERROR", "CRITICAL") else None
        elif current is not None:
            current.append(line)
    if current is not None:
        records.append("\n".join(current))
    known = set(known_ids)
    return [r for r in records if not ((m := ERROR_ID_IN_LOG.search(r)) and m.group(1) in known)]


def exception_line(record: str) -> str:
    """A log record's last unindented line after its first: the exception that ended its
    traceback (or its message when it has none)."""
    lines = [line for line in record.splitlines()[1:] if line.strip() and not line[0].isspace()]
    return (lines[-1] if lines else record.splitlines()[0])[:200]


def summarize_record(record: str) -> str:
    lines = record.splitlines()
    head = lines[0][:200]
    last = next((line.strip() for line in reversed(lines[1:]) if line.strip()), "")
    return f"log: {head}" + (f" … {last[:200]}" if last else "")
