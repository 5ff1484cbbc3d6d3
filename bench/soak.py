"""Soak and fault suite: the real bot in its own process on the Discord emulator, a crowd of
simulated users, a fine-tune job, a SIGKILL mid-way and a restart on the same data folder.

Usage::

    python bench/soak.py --json                       # 120 s, 30 users, seed 1
    python bench/soak.py --json --seconds 20 --users 8 --seed 3
    python bench/soak.py --json --run-dir /tmp/soak --models-dir /tmp/m   # keeps logs
    python bench/soak.py --json --set HFCORD_COMMAND_COOLDOWN_S=0         # another setting

It prints one JSON object on stdout (``--json``: on one line) and exits 0 whatever the numbers
say (1, with ``{"error": ...}``, when the soak itself could not run). Progress goes to stderr.
With ``--run-dir`` (or ``--keep``) the run folder keeps the bot's logs (``bot-1.log`` before
the kill, ``bot-2.log`` after), its settings (``bot.env``) and ``transcript.jsonl`` (every
interaction with what the bot answered, then the bot's channel messages).

This module runs the soak and writes the report; ``bench/soak_crowd.py`` says who the users are
and what they do, ``bench/soak_record.py`` what is recorded and the rules the metrics follow.

What runs
---------
1. The tiny seeded checkpoints of ``tests/support/models.py`` (GPT-2, sentiment, NER, QA) are
   built into ``--models-dir`` (default: the run folder; existing ones are reused). No hub.
2. The emulator (:mod:`bot.sim`) starts in this process. Its world: two servers, each with two
   channels and a thread; the default admin (owner of both) and member, then ``--users`` - 3
   more (every fifth an Administrator, every fifth but one a Manage Messages moderator, every
   seventh in both servers, two thirds in the first one), and "mallory", an admin of the second
   server only, who first tries every hostile upload and reference once (the worst first).
3. ``python -m bot sync`` publishes the commands, then ``python -m bot`` runs the bot, both
   through :mod:`bot.sim.external` in separate processes, on a settings file naming the tiny
   models, the data folder, and the models folder as ``HFCORD_MODEL_ROOTS``; every other setting
   is the default. The bot runs in a folder of its own, not the checkout.
4. The first server's admin starts a short job (the tiny sentiment model, 32 CSV rows, 3
   steps) and a long one (max_steps 1,000,000: it trains until stopped), and promotes the short
   one once completed; the second server's admin then names its model folder as a base model
   and its number in /finetune promote. Meanwhile each user repeats: pick an action at random (seeded), wait for its
   answer, think 1 to 4 s. Actions: /sentiment, /ner, /ask, /generate (half of them clicked Stop
   by their author or by someone else), the Analyze sentiment / Find entities message actions on
   posted messages, /context set/append/upload/show (turning pages)/clear, /models, /help,
   /finetune start/status/list/cancel/promote/rollback, some in DMs. A quarter of the texts and
   many uploads are hostile (``tests/support/hostile_inputs.py``: empty, huge, mentions, masked
   links, markdown, binary, UTF-16, truncated, deeply nested JSON, 2 MB of tiny CSV rows; and
   host paths, relative climbs, URLs, ``hf://`` and another server's model folder as base model
   or dataset). Members run admin commands too (as a server's override would let them). Context
   writes in one channel go one at a time (so the last one is known); all else overlaps.
5. At ``--kill-at`` x ``--seconds`` (later if the long job has not reported a training step,
   at most ``--kill-wait`` s later) the bot process gets SIGKILL while users are mid-command,
   the moment it confirms one more /context set. It
   is started again on the same data folder; users wait meanwhile, then go on. They stop once
   ``--seconds`` have passed since they started, and at least a quarter of ``--seconds`` after
   the restart. After the restart the first admin starts another short job.
6. The end: users stop; every interaction gets its 3 s to be acknowledged; the server owner
   cancels the jobs started after the restart that still run; up to ``--drain-seconds`` for jobs
   to end; the answers still streaming finish; then one more /generate, and SIGTERM while it
   streams (SIGKILL after 30 s).

The metrics (JSON keys)
-----------------------
Interactions are what Discord sends the bot: slash commands, message actions, button clicks.
One is *eligible* when it was sent while a bot session was connected and ready, unless the
bot that got it was SIGKILLed less than 3 s later without having acknowledged it
(``killed_in_flight``: the killed bot could not answer those).

- ``interactions``: every interaction the users sent.
- ``acked_within_3s_pct``: 100 x eligible interactions acknowledged (any callback type) within
  3 s of being sent / eligible interactions. (Discord refuses a later acknowledgment.)
- ``ack_p99_ms``: the 99th percentile (nearest rank) of the send-to-acknowledgment time of the
  eligible interactions that were acknowledged.
- ``unhandled_errors``: bot messages (any revision, any channel) showing an error id or
  "Something went wrong", plus ERROR and CRITICAL records in the bot processes' logs (any
  logger); a record logging the error id of a counted message is that error, not another.
  ``unhandled_errors_by_action`` says which user action each answered ("bot log: LOGGER" for
  log records), ``unhandled_error_exceptions`` the last line of each log record's traceback (shown
  errors' too, found in the log by their id).
- ``lost_contexts``: channels whose last context write (set, append, upload) the bot confirmed
  before the kill ("Context set" / "Added.") is missing from the channel's context once the
  restarted bot is ready (no context, or one without that write's unique marker); a write or
  clear still unanswered at the kill may have replaced it, and its result is accepted too.
  Read from the data folder's database (read-only). ``contexts_checked``: channels checked.
- ``jobs_not_terminal``: this run's fine-tune jobs neither completed, failed, cancelled nor
  interrupted: those created before the kill, read as soon as the restarted bot is ready
  (``jobs_checked_after_restart`` of them), and any job, read after the end's cancel-and-drain
  while the bot still runs.
- ``mention_leaks``: bot message revisions that would ping someone on Discord (the emulator
  resolves mentions under the allowed_mentions each request carried).
- ``peak_rss_mb``: the largest peak resident set (VmHWM) of the bot processes, in MiB.

Also: ``seed``, ``seconds``, ``users``, ``startup_s`` and ``restart_s`` (process start to a
ready gateway session), ``kill_at_s``, ``job_at_kill`` (the long job's status and step when
killed), ``eligible``, ``acked_within_3s``, ``not_acknowledged`` (eligible, not acknowledged in
time), ``killed_in_flight``, ``sent_while_down`` (clicks sent while no bot was up),
``stuck_thinking`` (interactions to the last bot still showing "thinking…" at the end),
``sigterm_mid_stream`` (the last /generate was streaming when SIGTERM came),
``streams_left_open`` (replies of the last bot still showing an enabled Stop button after it
exited),
``host_leaks`` (bot message revisions showing the run, data or models folder, this checkout's
path, the planted host folder or its content, or a Python traceback; a path the user typed in
the interaction answered is an echo, not a leak; ``host_leaks_by_kind``,
``host_leak_samples``),
``foreign_refs_accepted`` (jobs recorded although their base model is another server's
model folder or another folder inside the data folder, or their dataset a local path, URL or
scheme; ``foreign_ref_samples``), ``orphan_workers`` (training processes of the killed bot alive 5 s after the kill; the soak
then kills them), ``workers_left_after_stop``, ``worker_peak_rss_mb``, ``jobs_by_status``,
``promotions_lost`` (promotions current in the database at the kill that /models, asked by
each server's owner as soon as the restarted bot is ready, does not show as promoted;
``promotions_checked`` of them),
``clean_exit`` (the last bot exited 0 on SIGTERM), ``bot_crashes`` (bot processes that ended on
their own), ``rejected_requests`` (bot requests the emulator refused as Discord would, by route
and status), ``unhandled_routes``, ``interactions_by_command``, ``actions`` (what users did,
with the hostile variant), ``client_refused`` (actions Discord's client itself refuses: a
disabled button), ``error_samples``, ``lost_context_samples``, ``not_terminal_jobs``,
``problems`` (what went wrong in the soak itself), ``run_dir`` (when kept).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import logging
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.soak_crowd import (  # noqa: E402
    CONTEXT_TEXT,
    Actor,
    Crowd,
    Population,
    answered,
    has_stop_button,
    populate,
)
from bench.soak_record import (  # noqa: E402
    ACK_DEADLINE_S,
    ERROR_ID_IN_LOG,
    ERROR_ID_IN_REPLY,
    ERROR_MARKERS,
    JOB_IN_REPLY,
    KILLED_RUN,
    LOG_RECORD,
    TERMINAL,
    ContextOp,
    Ledger,
    Sent,
    error_records,
    exception_line,
    foreign_refs,
    is_eligible,
    kill_workers,
    lost_contexts,
    nearest_rank,
    read_contexts,
    read_job_refs,
    read_jobs,
    read_promotions,
    summarize_record,
    vm_hwm_kib,
    worker_pids,
)
from bot.sim import (  # noqa: E402 - after the path set-up
    DiscordEmulator,
    InteractionFailed,
    InteractionTimeout,
    SimChannel,
    SimError,
    SimInteraction,
    SimMessage,
    SimUser,
)
from bot.sim.botprocess import SOURCE_ROOT, BotProcess, child_environment  # noqa: E402
from tests.support import hostile_inputs as hostile  # noqa: E402

log = logging.getLogger("bench.soak")

THINK_S = (1.0, 4.0)
ACTION_TIMEOUT_S = 120.0
ORPHAN_GRACE_S = 5.0
READY_TIMEOUT_S = 180.0
LONG_JOB_STEPS = 1_000_000
JOB_WAIT_S = 180.0  # for the short job before the long one starts
HOST_SECRET = "host-secret-7f3a9c-do-not-show"
PROMOTED_NOTE = "promoted in this server"  # what /models adds to a promoted task's line


# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SoakConfig:
    seconds: float = 120.0
    users: int = 30
    seed: int = 1
    data_dir: Path | None = None
    models_dir: Path | None = None
    kill_at: float = 0.5
    kill_wait_s: float = 90.0
    drain_s: float = 60.0
    run_dir: Path | None = None  # kept (with transcript.jsonl); default: a temp folder
    keep: bool = False
    settings: tuple[tuple[str, str], ...] = ()


def parse_args(argv: Sequence[str] | None) -> tuple[SoakConfig, bool]:
    parser = argparse.ArgumentParser(
        prog="python bench/soak.py", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument("--json", action="store_true", help="print the report on one line")
    parser.add_argument("--seconds", type=float, default=120.0, help="how long users act")
    parser.add_argument("--users", type=int, default=30, help="simulated users (at least 2)")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    parser.add_argument("--data-dir", type=Path, help="the bot's data folder (default: temp)")
    parser.add_argument("--models-dir", type=Path, help="tiny models, built there if missing")
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction of --seconds")
    parser.add_argument("--kill-wait", type=float, default=90.0, help="max wait for a step")
    parser.add_argument("--drain-seconds", type=float, default=60.0, help="max wait for jobs")
    parser.add_argument("--run-dir", type=Path, help="logs, settings, transcript (kept)")
    parser.add_argument("--keep", action="store_true", help="keep the temp run folder")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra bot setting, e.g. HFCORD_COMMAND_COOLDOWN_S=0 (repeatable)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    if args.users < 2:
        parser.error("--users must be at least 2")
    if not 0 < args.kill_at < 1:
        parser.error("--kill-at must be between 0 and 1")
    extra = []
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--set wants KEY=VALUE, got {item!r}")
        extra.append((key.strip(), value.strip()))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        logging.getLogger("bot.sim").setLevel(logging.WARNING)
    config = SoakConfig(
        seconds=args.seconds,
        users=args.users,
        seed=args.seed,
        data_dir=args.data_dir,
        models_dir=args.models_dir,
        kill_at=args.kill_at,
        kill_wait_s=args.kill_wait,
        drain_s=args.drain_seconds,
        run_dir=args.run_dir,
        keep=args.keep,
        settings=tuple(extra),
    )
    return config, args.json


def build_models(root: Path) -> dict[str, Path]:
    """The tiny checkpoints under ``root``, built (atomically) when missing."""
    from tests.support import models as tiny

    builders = {
        "generation": ("tiny-gpt2", tiny.build_tiny_gpt2),
        "sentiment": ("tiny-sentiment", tiny.build_tiny_sentiment),
        "ner": ("tiny-ner", tiny.build_tiny_ner),
        "qa": ("tiny-qa", tiny.build_tiny_qa),
        "embedding": ("tiny-embedding", tiny.build_tiny_embedding),
    }
    found = {}
    for task, (name, build) in builders.items():
        folder = root / name
        if not (folder / "config.json").is_file():
            partial = root / f".{name}.{os.getpid()}"
            shutil.rmtree(partial, ignore_errors=True)
            build(partial)
            shutil.rmtree(folder, ignore_errors=True)
            partial.rename(folder)
        found[task] = folder
    return found


# -------------------------------------------------------------------------------- the soak


class Soak:
    """One soak run: the emulator, the bot's processes, the crowd, then the report."""

    def __init__(self, config: SoakConfig, run_dir: Path) -> None:
        self.config = config
        self.run_dir = run_dir
        self.data_dir = (config.data_dir or run_dir / "data").resolve()
        self.models_dir = (config.models_dir or run_dir / "models").resolve()
        self.jobs_dir = self.data_dir / "jobs"
        self.db_path = self.data_dir / "hfcord.sqlite3"
        self.env_file = run_dir / "bot.env"
        self.bot_cwd = run_dir / "cwd"  # not the checkout; "../host-files" climbs to a host folder
        self.secret_dir = run_dir / "host-files"
        self.ledger = Ledger()
        self.emu = DiscordEmulator(ack_deadline_s=ACK_DEADLINE_S)
        self.population: Population | None = None
        self.models: dict[str, Path] = {}
        self.bots: list[BotProcess] = []
        self.run_index = 0
        self.bot_up = asyncio.Event()
        self.stop = asyncio.Event()
        self.restarted = asyncio.Event()
        self.context_locks: collections.defaultdict[int, asyncio.Lock] = collections.defaultdict(
            asyncio.Lock
        )
        self.main_job: int | None = None
        self.kill_clock: float | None = None
        self.report: dict[str, Any] = {
            "seed": config.seed,
            "seconds": config.seconds,
            "users": config.users,
        }
        self.lost: list[str] = []
        self.lost_promotions: list[str] = []
        self.not_terminal: set[int] = set()
        self.worker_peak_kib = 0
        self.orphans = 0
        self.crashes = 0
        self.pre_kill_jobs: set[int] = set()
        self.training_files = hostile.training_files(seed=config.seed)
        upload_cap = int(dict(config.settings).get("HFCORD_UPLOAD_MAX_BYTES", 1_000_000))
        self.context_files = hostile.context_files(cap_bytes=upload_cap, seed=config.seed)

    # -- set-up ---------------------------------------------------------------------

    def write_settings(self) -> None:
        for old in [*self.run_dir.glob("*.log"), self.run_dir / "transcript.jsonl"]:
            old.unlink(missing_ok=True)  # a reused --run-dir: only this run's logs count
        lines = {
            "DISCORD_TOKEN": self.emu.token,
            "HFCORD_DATA_DIR": str(self.data_dir),
            "HFCORD_GENERATION_MODEL": str(self.models["generation"]),
            "HFCORD_SENTIMENT_MODEL": str(self.models["sentiment"]),
            "HFCORD_NER_MODEL": str(self.models["ner"]),
            "HFCORD_QA_MODEL": str(self.models["qa"]),
            "HFCORD_EMBEDDING_MODEL": str(self.models["embedding"]),
            "HFCORD_MODEL_ROOTS": str(self.models_dir),
            "HFCORD_LOG_LEVEL": "INFO",
        }
        lines.update(dict(self.config.settings))
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        # A host folder an admin names as a dataset; its content must never reach Discord.
        self.secret_dir.mkdir(exist_ok=True)
        self.bot_cwd.mkdir(exist_ok=True)
        (self.secret_dir / "secrets.csv").write_text(
            f"text,label\n{HOST_SECRET} one,a\n{HOST_SECRET} two,b\n" * 10
        )

    def new_bot(self, bot_args: Sequence[str], log_name: str) -> BotProcess:
        env = child_environment(
            {
                "HF_HUB_OFFLINE": "1",
                "HF_DATASETS_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false",
            }
        )
        return BotProcess(
            api_url=self.emu.base_url,
            bot_args=[*bot_args, "--env-file", str(self.env_file)],
            cwd=self.bot_cwd,
            log_path=self.run_dir / log_name,
            env=env,
        )

    async def sync_commands(self) -> None:
        sync = self.new_bot(["sync"], "sync.log")
        await sync.start()
        code = await sync.wait(READY_TIMEOUT_S)
        if code != 0:
            tail = sync.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"`python -m bot sync` exited with {code}:\n{tail}")

    async def start_bot(self) -> float:
        """Start the next bot run; return seconds until its gateway session is ready."""
        self.run_index += 1
        bot = self.new_bot([], f"bot-{self.run_index}.log")
        identified = self.emu.hub.identify_count
        started = time.monotonic()
        await bot.start()
        self.bots.append(bot)
        deadline = started + READY_TIMEOUT_S
        while True:
            hub = self.emu.hub
            if (
                hub.identify_count > identified
                and hub.ready.is_set()
                and hub.current is not None
                and hub.current.connected
            ):
                break
            if not bot.running:
                tail = bot.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the bot exited with {bot.returncode} before ready:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the bot was not ready within {READY_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.05)
        return time.monotonic() - started

    async def watch_memory(self) -> None:
        while True:
            for bot in self.bots:
                bot.sample_memory()
            for pid in worker_pids(self.jobs_dir):
                self.worker_peak_kib = max(self.worker_peak_kib, vm_hwm_kib(pid))
            await asyncio.sleep(1.0)

    # -- sending --------------------------------------------------------------------

    async def send(
        self,
        action: str,
        make: Callable[[], Awaitable[SimInteraction]],
        *,
        run: int | None = None,
    ) -> SimInteraction | None:
        """Send one interaction and record it; None when the Discord client refused it.
        ``run``: the bot run it goes to when the users are held back (the checks after the
        restart); by default the current run while the bot is up, else None."""
        if run is None and self.bot_up.is_set():
            run = self.run_index
        self.ledger.actions[action] += 1
        try:
            inter = await make()
        except SimError as exc:
            self.ledger.client_refused[f"{action}: {type(exc).__name__}"] += 1
            return None
        self.ledger.sent.append(Sent(inter, action, run))
        return inter

    async def settle(
        self, inter: SimInteraction | None, *, quiet: float = 0.3, timeout: float = 60.0
    ) -> None:
        """Wait for the answer the user would read (not past the kill of the bot that had the
        interaction); a missing answer is measured at the end, from the emulator's record."""
        if inter is None:
            return
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (
                self.kill_clock is not None and inter.created_at <= self.kill_clock
            ):
                return
            try:
                await inter.final(timeout=min(1.0, remaining), quiet=quiet)
                return
            except InteractionFailed:
                return
            except InteractionTimeout:
                continue

    async def wait_up(self) -> bool:
        """Wait until a bot is up; False once the soak is stopping."""
        while not self.bot_up.is_set():
            if self.stop.is_set():
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.bot_up.wait(), 0.5)
        return not self.stop.is_set()

    async def pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    # -- the crowd ------------------------------------------------------------------

    async def user(self, actor: Actor) -> None:
        rng = random.Random(f"{self.config.seed}:{actor.index}")
        crowd = Crowd(self, actor, rng)
        plan = crowd.attack_plan() if actor.attacker else []
        while await self.wait_up():
            act = plan.pop(0) if plan else rng.choices(crowd.actions, weights=crowd.weights)[0]
            try:
                await asyncio.wait_for(act(), ACTION_TIMEOUT_S)
            except TimeoutError:
                self.ledger.problems.append(
                    f"user{actor.index}: an action took over {ACTION_TIMEOUT_S:.0f} s"
                )
            await self.pause(rng.uniform(*THINK_S))

    async def trainer(self) -> None:
        """The first server's admin: a short job, then the long one (training when the bot is
        killed); the short one promoted once completed, and another server's admin trying to
        use it; after the restart, one more short job."""
        assert self.population is not None
        admin = self.population.actors[0].user
        channel = self.emu.channel
        if not await self.wait_up():
            return
        first = await self.start_job(admin, channel, 3)
        # Queued at once behind the first, so other servers' jobs do not delay it.
        self.main_job = await self.start_job(admin, channel, LONG_JOB_STEPS)
        if self.main_job is None:
            self.ledger.problems.append("the long fine-tune job was not accepted")
        if first is not None and await self.job_ends(first, JOB_WAIT_S) == "completed":
            await self.command(admin, channel, "finetune promote", {"job": first}, "trainer")
            await self.command(
                admin, channel, "sentiment", {"text": "what a lovely day"}, "after promotion"
            )
            await self.probe_promoted_model(first)
        await self.restarted.wait()
        if await self.wait_up():
            await self.start_job(admin, channel, 3)

    async def start_job(self, user: SimUser, channel: SimChannel, max_steps: int) -> int | None:
        """A good /finetune start; the job's number, or None when refused."""
        good = hostile.good_training_csv()
        options = {
            "task": "text-classification",
            "base_model": str(self.models["sentiment"]),
            "file": self.emu.attachment(good.filename, good.data),
            "batch_size": 8,
            "max_length": 32,
            "max_steps": max_steps,
        }
        inter = await self.command(user, channel, "finetune start", options, "trainer")
        if inter is None:
            return None
        self.ledger.note_jobs(inter)
        found = JOB_IN_REPLY.search(inter.text)
        return int(found.group(1)) if found else None

    async def job_ends(self, job_id: int, timeout: float) -> str | None:
        """The job's status once it ended (None: still running after ``timeout`` or stopping)."""
        deadline = time.monotonic() + timeout
        while not self.stop.is_set() and time.monotonic() < deadline:
            jobs = await asyncio.to_thread(read_jobs, self.db_path, [self.emu.guild.id])
            status = jobs.get(job_id, (0, "queued", None))[1]
            if status in TERMINAL:
                return status
            await self.pause(1.0)
        return None

    async def probe_promoted_model(self, job_id: int) -> None:
        """An admin of the second server names the first server's promoted model as a base
        model, and its job by number: both must be refused (issue 10, item 1)."""
        assert self.population is not None
        attacker = self.population.actors[-1]
        if not attacker.attacker:
            return
        channel = self.emu.other_channel
        good = hostile.good_training_csv()
        options = {
            "task": "text-classification",
            "base_model": str(self.data_dir / "models" / str(job_id)),
            "file": self.emu.attachment(good.filename, good.data),
            "max_steps": 1,
        }
        what = "attacker, base_model: another server's promoted model"
        await self.command(attacker.user, channel, "finetune start", options, what)
        what = "attacker, another server's promoted job"
        await self.command(attacker.user, channel, "finetune promote", {"job": job_id}, what)

    async def command(
        self,
        user: SimUser,
        channel: SimChannel,
        command: str,
        options: dict[str, Any],
        what: str,
        *,
        timeout: float = 120.0,
        run: int | None = None,
    ) -> SimInteraction | None:
        """A scripted slash command, sent and answered (None: the client refused it)."""
        inter = await self.send(
            f"{command}: {what}",
            lambda: self.emu.slash(command, options, user=user, channel=channel),
            run=run,
        )
        await self.settle(inter, timeout=timeout)
        return inter

    # -- the fault ------------------------------------------------------------------

    async def fault(self, t0: float) -> None:
        """SIGKILL the bot mid-way (once the long job trains), restart it, check what it kept."""
        config = self.config
        await self.pause(max(0.0, t0 + config.kill_at * config.seconds - time.monotonic()))
        waited_until = time.monotonic() + config.kill_wait_s
        guilds = [g.id for g in (self.emu.guild, self.emu.other_guild)]
        while time.monotonic() < waited_until and not self.stop.is_set():
            jobs = await asyncio.to_thread(read_jobs, self.db_path, guilds)
            if self.main_job is not None and (jobs.get(self.main_job, (0, "", None))[2] or 0) >= 1:
                break
            await asyncio.sleep(0.5)
        jobs = await asyncio.to_thread(read_jobs, self.db_path, guilds)
        if self.main_job is not None and self.main_job in jobs:
            _, status, step = jobs[self.main_job]
            self.report["job_at_kill"] = {"id": self.main_job, "status": status, "step": step}
            if status != "running" or not step:
                self.ledger.problems.append(
                    f"the long job was {status} at step {step} when the bot was killed"
                )
        else:
            self.report["job_at_kill"] = None
        workers = worker_pids(self.jobs_dir)
        bot = self.bots[-1]
        if not bot.running:
            self.crashes += 1
        # The harshest case for a context: killed the moment its confirmation arrives.
        channel = self.emu.channel
        async with self.context_locks[channel.id]:
            marker = self.ledger.new_marker(config.seed)
            options = {"text": f"{marker} {CONTEXT_TEXT}"}
            inter = await self.send(
                "context set: just before the kill",
                lambda: self.emu.slash(
                    "context set", options, user=self.emu.admin, channel=channel
                ),
            )
            if inter is not None:
                op = ContextOp("set", channel.id, marker, inter)
                self.ledger.context_ops.append(op)
                with contextlib.suppress(InteractionFailed, InteractionTimeout):
                    await inter.wait_until(lambda _: op.state() != "pending", timeout=30)
            self.bot_up.clear()
            self.kill_clock = self.emu.clock.monotonic()
            self.report["kill_at_s"] = round(time.monotonic() - t0, 2)
            bot.kill()
        log.info("SIGKILLed bot process %s (%d worker(s) running)", bot.pid, len(workers))
        await bot.wait(30)
        await asyncio.sleep(0.5)  # requests the emulator had already received finish
        states_at_kill = {id(op): op.state() for op in self.ledger.context_ops}
        ops = list(self.ledger.context_ops)
        jobs_before = await asyncio.to_thread(read_jobs, self.db_path, guilds)
        promoted = await asyncio.to_thread(read_promotions, self.db_path, guilds)
        orphan_check = asyncio.create_task(self.count_orphans(workers))

        restart_s = await self.start_bot()
        self.report["restart_s"] = round(restart_s, 2)
        log.info("bot restarted in %.1f s", restart_s)
        channels = {op.channel_id for op in ops}
        contexts = await asyncio.to_thread(read_contexts, self.db_path, channels)
        checked, self.lost = lost_contexts(ops, states_at_kill, contexts)
        jobs_after = await asyncio.to_thread(read_jobs, self.db_path, guilds)
        self.pre_kill_jobs = set(jobs_before)
        self.not_terminal |= {
            job
            for job in jobs_before
            if jobs_after.get(job, (0, "missing", None))[1] not in TERMINAL
        }
        self.report["contexts_checked"] = checked
        self.report["jobs_checked_after_restart"] = len(jobs_before)
        await self.check_promotions(promoted)
        await orphan_check
        self.bot_up.set()
        self.restarted.set()

    async def check_promotions(self, promoted: dict[int, set[str]]) -> None:
        """/models in each server, by its owner, must show every promotion that was current in
        the database at the kill (the restarted bot serves them again)."""
        lost = []
        for guild_id, tasks in sorted(promoted.items()):
            channel = self.emu.channel if guild_id == self.emu.guild.id else self.emu.other_channel
            inter = await self.command(
                self.emu.admin, channel, "models", {}, "after the restart", run=self.run_index
            )
            lines = inter.text.splitlines() if inter is not None else []
            for task in sorted(tasks):
                shown = [line for line in lines if line.startswith(f"**{task}**")]
                if not any(PROMOTED_NOTE in line for line in shown):
                    lost.append(f"server {guild_id}: {task}")
        self.report["promotions_checked"] = sum(len(t) for t in promoted.values())
        self.lost_promotions = lost

    async def count_orphans(self, workers: list[int]) -> None:
        await asyncio.sleep(ORPHAN_GRACE_S)
        alive = [pid for pid in worker_pids(self.jobs_dir) if pid in workers]
        self.orphans = len(alive)
        if alive:
            log.warning("%d training process(es) outlived the killed bot; killing them", len(alive))
            kill_workers(alive, self.jobs_dir)

    # -- the end --------------------------------------------------------------------

    async def drain(self) -> None:
        """Cancel the jobs started after the restart that still run; wait for all to end."""
        guilds = {g.id: g for g in (self.emu.guild, self.emu.other_guild)}
        jobs = await asyncio.to_thread(read_jobs, self.db_path, guilds)
        pre_kill = self.pre_kill_jobs
        owner = self.emu.admin  # owns both servers
        for job_id, (guild_id, status, _) in sorted(jobs.items()):
            if status in TERMINAL or job_id in pre_kill:
                continue
            channel = self.emu.channel if guild_id == self.emu.guild.id else self.emu.other_channel
            inter = await self.send(
                "finetune cancel: drain",
                lambda job_id=job_id, channel=channel: self.emu.slash(  # type: ignore[misc]
                    "finetune cancel", {"job": job_id}, user=owner, channel=channel
                ),
            )
            await self.settle(inter)
        deadline = time.monotonic() + self.config.drain_s
        while time.monotonic() < deadline:
            jobs = await asyncio.to_thread(read_jobs, self.db_path, guilds)
            if all(status in TERMINAL for _, status, _ in jobs.values()):
                break
            await asyncio.sleep(1.0)
        self.not_terminal |= {j for j, (_, status, _) in jobs.items() if status not in TERMINAL}
        self.report["jobs_by_status"] = dict(
            collections.Counter(status for _, status, _ in jobs.values())
        )

    async def quiesce(self, quiet_s: float = 2.0, timeout: float = 60.0) -> None:
        """Wait until the bot has made no request for ``quiet_s`` (answers still streaming)."""
        deadline = time.monotonic() + timeout
        seen, since = len(self.emu.requests), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
            await asyncio.sleep(0.2)
            if len(self.emu.requests) != seen:
                seen, since = len(self.emu.requests), time.monotonic()

    async def stream_until_sigterm(self) -> None:
        """Start a /generate and let it stream, so the SIGTERM that follows finds it mid-way
        (as `docker stop` during a busy hour would)."""
        options = {"prompt": "Once upon a time,", "max_tokens": 200}
        inter = await self.send(
            "generate: streaming at SIGTERM",
            lambda: self.emu.slash("generate", options, user=self.emu.admin),
        )
        if inter is not None:
            with contextlib.suppress(InteractionFailed, InteractionTimeout):
                await inter.wait_until(lambda i: has_stop_button(i) or answered(i), timeout=60)
        self.report["sigterm_mid_stream"] = inter is not None and has_stop_button(inter)

    async def run(self) -> dict[str, Any]:
        config = self.config
        self.models_dir.mkdir(parents=True, exist_ok=True)
        log.info("building the tiny models in %s", self.models_dir)
        self.models = await asyncio.to_thread(build_models, self.models_dir)
        async with self.emu:
            self.population = populate(self.emu, config.users)
            self.write_settings()
            await self.sync_commands()
            memory = asyncio.create_task(self.watch_memory())
            tasks: list[asyncio.Task[None]] = []
            try:
                startup = await self.start_bot()
                self.report["startup_s"] = round(startup, 2)
                log.info(
                    "bot ready in %.1f s; %d users for %.0f s",
                    startup,
                    config.users,
                    config.seconds,
                )
                self.bot_up.set()
                t0 = time.monotonic()
                tasks = [asyncio.create_task(self.user(a)) for a in self.population.actors]
                tasks.append(asyncio.create_task(self.trainer()))
                await self.fault(t0)
                end = max(t0 + config.seconds, time.monotonic() + config.seconds / 4)
                await self.pause(end - time.monotonic())
                log.info("stopping the users")
                self.stop.set()
                _, pending = await asyncio.wait(tasks, timeout=ACTION_TIMEOUT_S + 10)
                for task in pending:
                    task.cancel()
                await asyncio.sleep(ACK_DEADLINE_S + 0.5)  # every interaction acked or failed
                await self.drain()
                await self.quiesce()
                final_bot = self.bots[-1]
                if not final_bot.running:
                    self.crashes += 1
                await self.stream_until_sigterm()
                code, clean = await final_bot.stop(30)
                self.report["clean_exit"] = clean and code == 0
                left = worker_pids(self.jobs_dir)
                self.report["workers_left_after_stop"] = len(left)
                kill_workers(left, self.jobs_dir)
            finally:
                memory.cancel()
                for task in tasks:
                    task.cancel()
                for bot in self.bots:
                    bot.kill()
                kill_workers(worker_pids(self.jobs_dir), self.jobs_dir)
            return self.finish_report()

    # -- the report -----------------------------------------------------------------

    def finish_report(self) -> dict[str, Any]:
        report = self.report
        emu = self.emu
        sent = self.ledger.sent
        kill = self.kill_clock

        def eligible(s: Sent) -> bool:
            return is_eligible(s, kill)

        chosen = [s for s in sent if eligible(s)]
        latencies = [
            s.inter.acknowledged_at - s.inter.created_at
            for s in chosen
            if s.inter.acknowledged_at is not None
        ]
        in_time = [t for t in latencies if t <= ACK_DEADLINE_S]
        errors, samples = self.error_replies()
        log_errors, log_samples = self.log_errors(set(errors))
        errors_by_action = collections.Counter(errors.values())
        exceptions: collections.Counter[str] = collections.Counter()
        for record in log_errors:
            match = LOG_RECORD.match(record)
            errors_by_action[f"bot log: {match.group(2) if match else '?'}"] += 1
            exceptions[exception_line(record)] += 1
        # An error a user was shown is counted once, by its reply; its traceback is in the log.
        for record in self.log_errors(set())[0]:
            match = ERROR_ID_IN_LOG.search(record)
            if match and match.group(1) in errors:
                exceptions[exception_line(record)] += 1
        last_run = self.run_index
        guilds = [self.emu.guild.id, self.emu.other_guild.id]
        try:
            foreign = foreign_refs(read_job_refs(self.db_path, guilds), self.data_dir, self.bot_cwd)
        except sqlite3.Error as exc:
            foreign = []
            self.ledger.problems.append(f"could not read the jobs' references: {exc}")
        leaks, leak_samples = self.host_leaks()
        report.update(
            interactions=len(sent),
            eligible=len(chosen),
            acked_within_3s=len(in_time),
            acked_within_3s_pct=round(100.0 * len(in_time) / len(chosen), 2) if chosen else None,
            ack_p99_ms=round(1000 * nearest_rank(latencies, 99), 1) if latencies else None,
            not_acknowledged=len(chosen) - len(in_time),
            killed_in_flight=sum(1 for s in sent if s.run == KILLED_RUN and not eligible(s)),
            sent_while_down=sum(1 for s in sent if s.run is None),
            unhandled_errors=len(errors) + len(log_errors),
            unhandled_errors_by_action=dict(sorted(errors_by_action.items())),
            unhandled_error_exceptions=dict(sorted(exceptions.items())),
            lost_contexts=len(self.lost),
            promotions_lost=len(self.lost_promotions),
            lost_promotion_samples=self.lost_promotions[:5],
            jobs_not_terminal=len(self.not_terminal),
            mention_leaks=len(emu.mention_leaks()),
            peak_rss_mb=round(max((b.peak_rss_kib for b in self.bots), default=0) / 1024, 1),
            streams_left_open=sum(
                1
                for s in sent
                if s.run == last_run and s.inter.original is not None and has_stop_button(s.inter)
            ),
            stuck_thinking=sum(
                1 for s in sent if s.run == last_run and s.inter.loading and not s.inter.failed
            ),
            host_leaks=sum(leaks.values()),
            host_leaks_by_kind=dict(sorted(leaks.items())),
            host_leak_samples=leak_samples,
            foreign_refs_accepted=len(foreign),
            foreign_ref_samples=foreign[:5],
            orphan_workers=self.orphans,
            worker_peak_rss_mb=round(self.worker_peak_kib / 1024, 1),
            bot_crashes=self.crashes,
            rejected_requests=dict(
                collections.Counter(
                    f"{r.route} {r.status}" for r in emu.requests if r.status >= 400
                )
            ),
            unhandled_routes=len(emu.unhandled_requests),
            interactions_by_command=dict(
                sorted(collections.Counter(s.inter.name for s in sent).items())
            ),
            actions=dict(sorted(self.ledger.actions.items())),
            client_refused=dict(sorted(self.ledger.client_refused.items())),
            error_samples=(samples + log_samples)[:8],
            lost_context_samples=self.lost[:5],
            not_terminal_jobs=sorted(self.not_terminal),
            problems=self.ledger.problems[:20],
        )
        if self.config.keep or self.config.run_dir is not None:
            report["run_dir"] = str(self.run_dir)
            self.write_transcript(eligible)
        return report

    def write_transcript(self, eligible: Callable[[Sent], bool]) -> None:
        """``transcript.jsonl`` in the run folder: every interaction with its answers, then the
        bot's channel messages, every revision, for reading what happened."""
        answered: set[int] = set()
        with open(self.run_dir / "transcript.jsonl", "w", encoding="utf-8") as out:
            for s in self.ledger.sent:
                inter = s.inter
                ack = inter.acknowledged_at
                row = {
                    "action": s.action,
                    "command": inter.name,
                    "user": inter.user.name,
                    "channel": inter.channel.name,
                    "run": s.run,
                    "eligible": eligible(s),
                    "ack_ms": round(1000 * (ack - inter.created_at), 1) if ack else None,
                    "failed": inter.failed,
                    "messages": [m.contents for m in inter.messages],
                }
                answered.update(m.id for m in inter.messages)
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
            for message in self.emu.bot_messages:
                if message.id not in answered:
                    other = {"channel message": message.channel.name, "revisions": message.contents}
                    out.write(json.dumps(other, ensure_ascii=False) + "\n")

    def action_of(self, message: SimMessage) -> str:
        """The user action a bot message answers ("channel message" for the bot's own)."""
        inter = self.emu.interaction_for(message)
        if inter is None:
            return "channel message"
        sent = next((s for s in self.ledger.sent if s.inter is inter), None)
        return sent.action if sent is not None else inter.name

    def error_replies(self) -> tuple[dict[str, str], list[str]]:
        """Bot messages showing an error id or "Something went wrong": error id (or message id)
        -> the action answered; and samples."""
        found: dict[str, str] = {}
        samples: list[str] = []
        for message in self.emu.bot_messages:
            for revision in message.revisions:
                text = revision.content + json.dumps(revision.embeds)
                if not any(marker in text for marker in ERROR_MARKERS):
                    continue
                match = ERROR_ID_IN_REPLY.search(text)
                key = match.group(1) if match else f"message {message.id}"
                if key not in found:
                    found[key] = self.action_of(message)
                    samples.append(f"reply to {found[key]}: {revision.content[:160]}")
                break
        return found, samples

    def log_errors(self, reply_ids: set[str]) -> tuple[list[str], list[str]]:
        """ERROR/CRITICAL records in the bot logs, less those of an error id already counted."""
        errors: list[str] = []
        for bot in self.bots:
            if bot.log_path.is_file():
                errors += error_records(bot.log_path.read_text(errors="replace"), reply_ids)
        return errors, [summarize_record(r) for r in errors[:4]]

    def host_leaks(self) -> tuple[collections.Counter[str], list[str]]:
        """Bot message revisions showing a host path, the planted secret or a traceback, by
        what they show (the first match of each revision); and samples. A path the user typed
        in the interaction the message answers is an echo, not a leak."""
        needles = {
            "host secret": HOST_SECRET,
            "traceback": "Traceback (most recent call last)",
            "data folder": str(self.data_dir),
            "models folder": str(self.models_dir),
            "host folder": str(self.secret_dir),
            "run folder": str(self.run_dir),
            "checkout": str(SOURCE_ROOT),
        }
        kinds: collections.Counter[str] = collections.Counter()
        samples: list[str] = []
        for message in self.emu.bot_messages:
            inter = self.emu.interaction_for(message)
            typed = json.dumps(inter.payload.get("data"), ensure_ascii=False) if inter else ""
            for revision in message.revisions:
                text = revision.content + json.dumps(revision.embeds, ensure_ascii=False)
                kind = next((k for k, n in needles.items() if n in text and n not in typed), None)
                if kind is None:
                    continue
                kinds[kind] += 1
                if len(samples) < 5:
                    at = text.index(needles[kind])
                    snippet = text[max(0, at - 80) : at + 80].replace("\n", " ")
                    samples.append(f"{self.action_of(message)}: …{snippet}…")
        return kinds, samples


# ------------------------------------------------------------------------------------ main


async def run_soak(config: SoakConfig) -> dict[str, Any]:
    if config.run_dir is not None:
        config.run_dir.mkdir(parents=True, exist_ok=True)
        return await Soak(config, config.run_dir.resolve()).run()
    run_dir = Path(tempfile.mkdtemp(prefix="hfcord-soak-"))
    try:
        return await Soak(config, run_dir).run()
    finally:
        if not config.keep:
            shutil.rmtree(run_dir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    config, one_line = parse_args(argv)
    try:
        report = asyncio.run(run_soak(config))
    except RuntimeError as exc:
        print(json.dumps({"error": str(exc), "seed": config.seed}))
        return 1
    print(json.dumps(report) if one_line else json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
