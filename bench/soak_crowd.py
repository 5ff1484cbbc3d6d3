"""Who the soak's simulated users are and what they do (``bench/soak.py`` runs them).

:func:`populate` adds the users, roles and channels to the emulator's world; a :class:`Crowd`
is one user's repertoire of actions, each sending one or two interactions through the soak
(which records them) and waiting for the answer; :meth:`Crowd.attack_plan` is the scripted
attacker's list of every hostile upload and reference.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.soak_record import ContextOp
from bot.sim import (
    DiscordEmulator,
    InteractionFailed,
    InteractionTimeout,
    SimChannel,
    SimError,
    SimGuild,
    SimInteraction,
    SimUser,
)
from bot.sim.entities import ADMINISTRATOR, MANAGE_MESSAGES
from tests.support import hostile_inputs as hostile

if TYPE_CHECKING:
    from bench.soak import Soak

NORMAL_TEXTS = (
    "I love this new library, it works great!",
    "This was the worst movie I have seen in years.",
    "Angela Merkel met Emmanuel Macron in Paris on Tuesday.",
    "The Eiffel Tower was finished in 1889.",
    "Hugging Face is based in New York and Paris.",
    "What a lovely sunny day for a walk by the river.",
    "Write a short poem about autumn leaves.",
    "Once upon a time, in a small village,",
)
QUESTIONS = (
    "When was the tower finished?",
    "Where is the Eiffel Tower?",
    "How tall is it?",
    "Which museum is the most visited?",
)
CONTEXT_TEXT = (
    "The Eiffel Tower is in Paris. It was finished in 1889 and is 330 metres tall. "
    "The Louvre is the world's most visited museum."
)


@dataclass(frozen=True)
class Actor:
    """One simulated user: the servers they are in and their role there."""

    index: int
    user: SimUser
    guilds: tuple[SimGuild, ...]
    admin: bool
    moderator: bool
    attacker: bool = False  # first tries every hostile input once (see Crowd.attack_plan)


@dataclass(frozen=True)
class Population:
    """Every simulated user, and where they act."""

    actors: tuple[Actor, ...]
    channels: dict[int, tuple[SimChannel, ...]]  # guild id -> its channels and threads
    admin_roles: dict[int, int]  # guild id -> role id

    def members_of(self, guild: SimGuild) -> list[Actor]:
        return [a for a in self.actors if guild in a.guilds]


def populate(emu: DiscordEmulator, users: int) -> Population:
    """Add to the emulator's world (before the bot connects) ``users`` users in all, counting
    its admin and member; Admins and Mods roles; a channel in each server, a thread in the
    second."""
    state, world = emu.state, emu.world
    first, second = world.guild, world.other_guild
    admins = {
        first.id: world.admin_role,
        second.id: state.add_role(second, "Admins", permissions=ADMINISTRATOR),
    }
    mods = {g.id: state.add_role(g, "Mods", permissions=MANAGE_MESSAGES) for g in (first, second)}
    channels: dict[int, tuple[SimChannel, ...]] = {
        first.id: (world.channel, world.thread, state.add_channel(first, "lab")),
        second.id: (
            world.other_channel,
            state.add_thread(world.other_channel, "other-thread", owner=world.member),
            state.add_channel(second, "other-lab"),
        ),
    }
    both = (first, second)
    actors = [
        Actor(0, world.admin, both, admin=True, moderator=False),
        Actor(1, world.member, both, admin=False, moderator=False),
    ]
    for index in range(2, users - 1):
        home = first if index % 3 else second
        guilds = both if index % 7 == 0 else (home,)
        admin, moderator = index % 5 == 0, index % 5 == 1
        user = state.add_user(f"user{index}")
        for guild in guilds:
            roles = [admins[guild.id]] if admin else [mods[guild.id]] if moderator else []
            state.add_member(guild, user, roles=roles)
        actors.append(Actor(index, user, guilds, admin=admin, moderator=moderator))
    if users >= 3:  # an admin of the second server only, who tries every hostile input
        mallory = state.add_user("mallory")
        state.add_member(second, mallory, roles=[admins[second.id]])
        actors.append(Actor(users - 1, mallory, (second,), True, False, attacker=True))
    return Population(
        tuple(actors), channels, {guild_id: role.id for guild_id, role in admins.items()}
    )


def bad_base_models(data_dir: Path, host_dir: Path) -> list[tuple[str, str]]:
    """(what, value) of base models a server admin must not be able to use."""
    return [
        ("a host folder", "/etc"),
        ("the root folder", "/"),
        ("a relative climb", "../../../../etc"),
        ("a relative climb to a host folder", "../host-files"),
        ("hf:// scheme", "hf://some/model"),
        ("a URL", "https://evil.example/model.bin"),
        ("file:// URL", "file:///etc/hosts"),
        ("another server's model folder", str(data_dir / "models" / "1")),
        ("the data folder", str(data_dir)),
        ("a host folder with data", str(host_dir)),
        ("a hub id (offline)", "gpt2"),
        ("an unknown hub id", "no-such-owner/no-such-model"),
        ("a huge value", "x" * 300),
        ("empty", ""),
    ]


def bad_datasets(host_dir: Path) -> list[tuple[str, str]]:
    """(what, value) of datasets that are not hub dataset ids, or not reachable offline."""
    return [
        ("a host folder", str(host_dir)),
        ("a host file", str(host_dir / "secrets.csv")),
        ("/etc", "/etc"),
        ("a relative climb to a host folder", "../host-files"),
        ("hf:// scheme", "hf://datasets/some/data"),
        ("a URL", "https://evil.example/data.csv"),
        ("file:// URL", "file:///etc/passwd"),
        ("a hub id (offline)", "imdb"),
        ("a hub id with config (offline)", "glue:sst2"),
        ("a huge value", "x" * 500),
        ("empty", ""),
    ]


class Crowd:
    """One user's repertoire: each action sends one or two interactions and waits for them."""

    def __init__(self, soak: Soak, actor: Actor, rng: random.Random) -> None:
        self.soak = soak
        self.emu = soak.emu
        self.actor = actor
        self.rng = rng
        assert soak.population is not None
        self.population = soak.population
        guild = actor.guilds[0]
        self.texts = hostile.hostile_texts(
            user_id=self.population.actors[1].user.id, role_id=self.population.admin_roles[guild.id]
        )
        table: list[tuple[Callable[[], Awaitable[None]], int]] = [
            (self.sentiment, 10),
            (self.ner, 8),
            (self.ask, 10),
            (self.generate, 7),
            (self.message_action, 8),
            (self.context_set, 6),
            (self.context_append, 5),
            (self.context_upload, 4),
            (self.context_show, 5),
            (self.context_clear, 2),
            (self.models, 3),
            (self.help, 2),
            (self.finetune, 12 if actor.admin else 1),
        ]
        self.actions = [action for action, _ in table]
        self.weights = [weight for _, weight in table]

    # -- choices --------------------------------------------------------------------

    def place(self, *, dm_ok: bool = False) -> SimChannel:
        if dm_ok and self.rng.random() < 0.05:
            return self.emu.dm(self.actor.user)
        guild = self.rng.choice(self.actor.guilds)
        return self.rng.choice(self.population.channels[guild.id])

    def text(self, normal: Sequence[str] = NORMAL_TEXTS) -> tuple[str, str]:
        """(text, what): a normal text three times in four, else a hostile one."""
        if self.rng.random() < 0.75:
            return self.rng.choice(normal), "normal"
        chosen = self.rng.choice(self.texts)
        return chosen.text, chosen.what

    def someone_in(self, channel: SimChannel) -> SimUser:
        guild = self.emu.state.guild_of(channel)
        if guild is None:
            return self.actor.user
        return self.rng.choice(self.population.members_of(guild)).user

    def slash(
        self,
        action: str,
        command: str,
        options: dict[str, Any],
        channel: SimChannel,
        *,
        bypass: bool = False,
    ) -> Awaitable[SimInteraction | None]:
        return self.soak.send(
            action,
            lambda: self.emu.slash(
                command,
                options,
                user=self.actor.user,
                channel=channel,
                bypass_permissions=bypass,
            ),
        )

    # -- models -----------------------------------------------------------------------

    async def sentiment(self) -> None:
        text, what = self.text()
        channel = self.place(dm_ok=True)
        inter = await self.slash(f"sentiment: {what}", "sentiment", {"text": text}, channel)
        await self.soak.settle(inter)

    async def ner(self) -> None:
        text, what = self.text()
        channel = self.place(dm_ok=True)
        inter = await self.slash(f"ner: {what}", "ner", {"text": text}, channel)
        await self.soak.settle(inter)

    async def ask(self) -> None:
        text, what = self.text(QUESTIONS)
        inter = await self.slash(f"ask: {what}", "ask", {"question": text}, self.place())
        await self.soak.settle(inter)

    async def generate(self) -> None:
        rng = self.rng
        prompt, what = self.text()
        options: dict[str, Any] = {"prompt": prompt}
        if rng.random() < 0.7:
            options["max_tokens"] = rng.choice([1, 10, 40, 120, 4096])
        if rng.random() < 0.3:
            options["temperature"] = rng.choice([0.0, 0.7, 2.0])
            options["top_p"] = rng.choice([0.0, 0.5, 1.0])
        channel = self.place(dm_ok=True)
        inter = await self.slash(f"generate: {what}", "generate", options, channel)
        if inter is not None and rng.random() < 0.5:
            try:
                await inter.wait_until(lambda i: has_stop_button(i) or answered(i), timeout=30)
            except (InteractionFailed, InteractionTimeout):
                pass
            if has_stop_button(inter):
                await asyncio.sleep(rng.uniform(0.0, 1.5))
                own = rng.random() < 0.8
                clicker = self.actor.user if own else self.someone_in(channel)
                message = inter.original
                assert message is not None
                click = await self.soak.send(
                    "click Stop: " + ("author" if own else "someone"),
                    lambda: self.emu.click(message, label="Stop", user=clicker),
                )
                await self.soak.settle(click)
        await self.soak.settle(inter, quiet=1.6, timeout=90)

    async def message_action(self) -> None:
        rng = self.rng
        channel = self.place()
        text, what = self.text()
        attachments = []
        if rng.random() < 0.1:
            text, what = "", "attachment only"
            attachments = [self.emu.attachment("cat.png", b"\x89PNG\r\n\x1a\n" + bytes(64))]
        if not text.strip() and not attachments:
            text = text + "."
        try:
            message = await self.emu.post_message(
                channel, self.actor.user, text[:2000], attachments=attachments
            )
        except SimError as exc:
            self.soak.ledger.client_refused[f"post: {type(exc).__name__}"] += 1
            return
        name = rng.choice(["Analyze sentiment", "Find entities"])
        user = self.someone_in(channel)
        inter = await self.soak.send(
            f"{name}: {what}", lambda: self.emu.context_menu(name, message, user=user)
        )
        await self.soak.settle(inter)

    # -- contexts -----------------------------------------------------------------------

    async def context_write(self, kind: str, chosen: hostile.HostileFile | None = None) -> None:
        """/context set, append or upload (``chosen``: this file), one write at a time per
        channel, recorded for the lost-context check."""
        rng = self.rng
        soak = self.soak
        channel = self.place()
        marker = soak.ledger.new_marker(soak.config.seed)
        options: dict[str, Any]
        written: str | None = marker
        if kind == "upload":
            if chosen is None and rng.random() < 0.7:
                upload, what = hostile.good_context_file(marker), "good file"
            else:
                upload = chosen or rng.choice(soak.context_files)
                what, written = upload.what, None
            options = {"file": self.upload(upload)}
        else:
            text, what = self.text((CONTEXT_TEXT,))
            if text.strip():
                text = f"{marker} {text}"[:6000]
            else:
                written = None
            options = {"text": text}
        async with soak.context_locks[channel.id]:
            inter = await self.slash(f"context {kind}: {what}", f"context {kind}", options, channel)
            if inter is not None:
                soak.ledger.context_ops.append(ContextOp(kind, channel.id, written, inter))
            await soak.settle(inter)

    async def context_set(self) -> None:
        await self.context_write("set")

    async def context_append(self) -> None:
        await self.context_write("append")

    async def context_upload(self) -> None:
        await self.context_write("upload")

    async def context_clear(self) -> None:
        soak = self.soak
        channel = self.place()
        async with soak.context_locks[channel.id]:
            inter = await self.slash("context clear", "context clear", {}, channel)
            if inter is not None:
                soak.ledger.context_ops.append(ContextOp("clear", channel.id, None, inter))
            await soak.settle(inter)

    async def context_show(self) -> None:
        channel = self.place()
        inter = await self.slash("context show", "context show", {}, channel)
        await self.soak.settle(inter)
        message = inter.original if inter is not None else None
        if message is None or not any(
            b.label == "Next ▶" and not b.disabled for b in message.buttons
        ):
            return
        own = self.rng.random() < 0.8
        user = self.actor.user if own else self.someone_in(channel)
        click = await self.soak.send(
            "click Next: " + ("author" if own else "someone"),
            lambda: self.emu.click(message, label="Next ▶", user=user),
        )
        await self.soak.settle(click)

    # -- the rest -----------------------------------------------------------------------

    async def models(self) -> None:
        inter = await self.slash("models", "models", {}, self.place(dm_ok=True))
        await self.soak.settle(inter)

    async def help(self) -> None:
        inter = await self.slash("help", "help", {}, self.place(dm_ok=True))
        await self.soak.settle(inter)

    async def finetune(self) -> None:
        rng = self.rng
        sub = rng.choices(
            ["start", "status", "list", "cancel", "promote", "rollback"], [5, 3, 2, 2, 1, 1]
        )[0]
        who = "admin" if self.actor.admin else "member"
        options: dict[str, Any] = {}
        what = who
        if sub == "start":
            options, what = self.start_options()
            what = f"{who}, {what}"
        elif sub in ("status", "cancel", "promote"):
            job = self.some_job()
            if job is not None:
                options["job"] = job
            elif sub != "status":
                options["job"] = rng.choice([0, -1, 999_999, 2**53])
        elif sub == "rollback":
            options["task"] = rng.choice(["sentiment", "ner", "qa", "generation"])
        await self.finetune_command(sub, options, what)

    async def finetune_command(self, sub: str, options: dict[str, Any], what: str) -> None:
        """/finetune SUB in a channel of the user's; a member reaches it as a server override
        would let them (the bot's own check must refuse)."""
        channel = self.place()
        inter = await self.slash(
            f"finetune {sub}: {what}",
            f"finetune {sub}",
            options,
            channel,
            bypass=not self.actor.admin,
        )
        await self.soak.settle(inter, timeout=120)
        if inter is not None and sub == "start":
            self.soak.ledger.note_jobs(inter)

    def some_job(self) -> int | None:
        """A job id users know of (not the long job before the kill), or None."""
        known = [
            j
            for j in self.soak.ledger.known_jobs
            if j != self.soak.main_job or self.soak.restarted.is_set()
        ]
        if known and self.rng.random() < 0.6:
            return self.rng.choice(known)
        return None

    def start_options(self) -> tuple[dict[str, Any], str]:
        """Options of a random /finetune start: a good small job, a broken file, a bad base
        model or a dataset reference."""
        rng = self.rng
        soak = self.soak
        options = self.base_options()
        roll = rng.random()
        if roll < 0.2:
            options["file"] = self.upload(hostile.good_training_csv())
            return options, "good small job"
        if roll < 0.6:
            bad = rng.choice(soak.training_files)
            options["file"] = self.upload(bad)
            if rng.random() < 0.2:
                options["task"] = rng.choice(
                    ["token-classification", "question-answering", "causal-lm"]
                )
            return options, f"file: {bad.what}"
        if roll < 0.8:
            what, ref = rng.choice(bad_base_models(soak.data_dir, soak.secret_dir))
            options["base_model"] = ref
            options["file"] = self.upload(hostile.good_training_csv())
            return options, f"base_model: {what}"
        what, ref = rng.choice(bad_datasets(soak.secret_dir))
        options["dataset"] = ref
        if rng.random() < 0.3:
            options["split"] = rng.choice(["train", "../../etc", "train[:10]"])
        if rng.random() < 0.1:
            options["file"] = self.upload(hostile.good_training_csv())
        return options, f"dataset: {what}"

    def base_options(self) -> dict[str, Any]:
        return {
            "task": "text-classification",
            "base_model": str(self.soak.models["sentiment"]),
            "batch_size": 8,
            "max_length": 32,
            "max_steps": self.rng.randint(1, 3),
        }

    def upload(self, file: hostile.HostileFile) -> Any:
        return self.emu.attachment(file.filename, file.data)

    def attack_plan(self) -> list[Callable[[], Awaitable[None]]]:
        """Every hostile training file, base model, dataset and context file once, and the other
        server's job, from an admin of the second server: the worst first, the rest shuffled."""
        soak = self.soak
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = []

        def start(what: str, **chosen: Any) -> None:
            async def step() -> None:
                options = self.base_options()
                options.update(chosen)
                await self.finetune_command("start", options, f"attacker, {what}")

            steps.append((what, step))

        for bad in soak.training_files:
            start(f"file: {bad.what}", file=self.upload(bad))
        for what, ref in bad_base_models(soak.data_dir, soak.secret_dir):
            start(
                f"base_model: {what}", base_model=ref, file=self.upload(hostile.good_training_csv())
            )
        for what, ref in bad_datasets(soak.secret_dir):
            start(f"dataset: {what}", dataset=ref)
        for file in soak.context_files:

            async def upload(file: hostile.HostileFile = file) -> None:
                await self.context_write("upload", chosen=file)

            steps.append((f"context file: {file.what}", upload))
        for sub in ("status", "cancel", "promote"):

            async def other_server(sub: str = sub) -> None:
                job = soak.main_job or 1
                await self.finetune_command(sub, {"job": job}, "attacker, another server's job")

            steps.append((f"{sub} another server's job", other_server))
        first = (
            "file: deep JSON array",
            "file: many tiny rows",
            "file: deep JSONL field",
            "dataset: a host folder",
            "base_model: another server's model folder",
        )
        head = [step for name in first for what, step in steps if what == name]
        rest = [step for what, step in steps if what not in first]
        self.rng.shuffle(rest)
        return head + rest


def answered(inter: SimInteraction) -> bool:
    """The reply is there and has no buttons: a refusal, or a generation already over."""
    message = inter.original
    return (
        message is not None
        and not message.loading
        and bool(message.content)
        and not message.buttons
    )


def has_stop_button(inter: SimInteraction) -> bool:
    message = inter.original
    return message is not None and any(
        b.label == "Stop" and not b.disabled for b in message.buttons
    )
