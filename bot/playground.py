"""`python -m bot playground`: the real bot and a local Discord emulator in one process.

Type commands as in Discord (`/generate prompt: Tell me a story max_tokens: 40`); replies print
as they arrive, streamed edits included. Lines starting with `:` control the playground.
With standard input not a terminal, it runs one command per line and exits when the last
reply is final (exit 1 if a command could not run or got no answer).

Conversations: `/chat message: ...` opens a thread and the playground follows into it;
`:say TEXT` posts as the current user, `:mention TEXT` the same mentioning the bot, `:reply TEXT`
replies to the bot's last message here; the playground waits for the bot's answer, if one comes.

The emulated world (servers, channels, threads, users, roles) is made once per data folder and
saved there (`playground-world.json`, again when the session ends, with the threads chats
opened), so what the bot stored for a channel or server (contexts, chats, personas, fine-tuning
jobs, promoted models) is there again in the next run, as on Discord. `--reset` or `:reset`
starts a new world on purpose.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from pydantic import SecretStr

from bot.settings import Settings, SettingsError
from bot.sim import (
    DiscordEmulator,
    InteractionFailed,
    InteractionTimeout,
    MessageEvent,
    SimChannel,
    SimError,
    SimInteraction,
    SimMessage,
    SimUser,
)
from bot.sim.commandline import command_name, parse_command_line
from bot.sim.harness import connected
from bot.sim.options import ATTACHMENT, leaf_options
from bot.sim.worldfile import SavedWorld, WorldFileError, read_world, save_world

log = logging.getLogger(__name__)

EXIT_USAGE = 2
WORLD_FILE = "playground-world.json"  # in the data folder
DM_CHANNEL = "dm"  # Session.channel_name of the current user's DM with the bot
ANSWER_START_S = 1.5  # after a message, how long to wait for the bot to start answering
ANSWER_QUIET_S = 0.3  # an answer is final once its Stop button is gone and it is this quiet

HELP = """\
Type a command as in Discord:
  /help
  /sentiment text: I love this
  /context set text: The Eiffel Tower is in Paris.
  /ask question: Where is the Eiffel Tower?
  /generate prompt: Tell me a story max_tokens: 40
  /chat message: Hi! Who are you?       (opens a thread; the playground follows into it)
  /context upload file: ./notes.txt     (attachment options take a path)
Options are `name: value`; a value runs until the next option name.
Playground controls:
  :as admin | :as member        act as the server admin or a plain member
  :in general | :in thread | :in other | :in dm
                                go to #general, its thread, another server, or your DM with the bot
  :say TEXT                     post a message as the current user (answered in a chat thread
                                when HFCORD_MESSAGE_CONTENT_INTENT is on, and in DMs when allowed)
  :mention TEXT                 the same, mentioning the bot (always answered)
  :reply TEXT                   reply to the bot's last message here (answered)
  :menu NAME                    run a message action (e.g. Analyze sentiment) on the last :say
  :click LABEL                  click a button (e.g. Stop) on the newest message showing it
  :reset                        discard this world (servers, channels, users) and start anew
  :help                         this help
  :quit                         leave"""


@dataclass
class Session:
    """What the playground user currently acts as, and where."""

    user_name: str = "member"
    channel_name: str = "general"
    last_said: SimMessage | None = None
    failures: int = 0
    # message id -> (text, files-and-buttons line) as last printed
    printed: dict[int, tuple[str, str]] = field(default_factory=dict)


class Outcome(enum.Enum):
    """What the playground does after a line."""

    CONTINUE = "continue"
    QUIT = "quit"
    RESET = "reset"  # close the bot and the emulator, start again in a new world


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot playground",
        description="Try the bot in a terminal: a local Discord emulator, no account or token.",
    )
    parser.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    parser.add_argument("--as", dest="as_user", choices=("member", "admin"), default="member")
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds to wait for each reply (model loads included; default 600)",
    )
    parser.add_argument("--verbose", action="store_true", help="show the bot's log on stderr")
    parser.add_argument(
        "--reset",
        action="store_true",
        help=f"start in a new world, discarding the one saved in the data folder ({WORLD_FILE})",
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.load(env_file=args.env_file)
    except SettingsError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE

    from bot.logs import setup_logging

    setup_logging(settings.log_level if args.verbose else "WARNING", secrets=settings.secrets())
    if not args.verbose:
        logging.getLogger("discord.client").setLevel(logging.ERROR)  # voice-support notices
    interactive = sys.stdin.isatty()
    playground = Playground(
        settings,
        session=Session(user_name=args.as_user),
        timeout=args.timeout,
        interactive=interactive,
        reset=args.reset,
    )
    try:
        return asyncio.run(playground.run(sys.stdin, sys.stdout))
    except KeyboardInterrupt:
        return 0


class Playground:
    """Runs the emulator and the bot, reads lines, prints what the bot sends."""

    def __init__(
        self,
        settings: Settings,
        *,
        session: Session | None = None,
        timeout: float = 600.0,
        interactive: bool = False,
        reset: bool = False,
    ) -> None:
        self.settings = settings
        self.session = session or Session()
        self.timeout = timeout
        self.interactive = interactive
        self.reset = reset  # start in a new world, discarding the saved one
        self.out: TextIO = sys.stdout
        self.emu: DiscordEmulator
        self._last_bot_activity = 0.0  # loop time of the bot's last message create or edit

    @property
    def world_path(self) -> Path:
        return self.settings.data_dir / WORLD_FILE

    async def run(self, stdin: TextIO, stdout: TextIO) -> int:
        self.out = stdout
        fresh = self.reset
        while True:
            try:
                saved = await self._saved_world(fresh)
                emulator = DiscordEmulator(saved_world=saved)
            except WorldFileError as exc:
                self._print(
                    f"! {exc}. Start with `python -m bot playground --reset` for a new world "
                    "(what the bot stored for the old one stays in the database, unreachable)."
                )
                return EXIT_USAGE
            outcome = await self._serve(emulator, stdin, new_world=saved is None)
            if outcome is not Outcome.RESET:
                return 1 if self.session.failures else 0
            fresh = True

    async def _saved_world(self, fresh: bool) -> SavedWorld | None:
        """The world saved in the data folder, or None for a new one (saying what ``fresh``
        discards)."""
        path = self.world_path
        if not await asyncio.to_thread(path.is_file):
            return None
        if not fresh:
            return await asyncio.to_thread(read_world, path)
        try:
            held = (await asyncio.to_thread(read_world, path)).describe()
        except WorldFileError:
            held = "a world file that could not be read"
        self._print(
            f"Starting a new world. Discarded: the saved one in {path} ({held}). "
            "Contexts, fine-tuning jobs and promoted models made there stay in the database "
            "under its old ids; nothing in the new world reaches them."
        )
        return None

    async def _serve(self, emulator: DiscordEmulator, stdin: TextIO, *, new_world: bool) -> Outcome:
        """Run the emulator and the bot in one world until the user quits or resets."""
        from bot.app import open_app  # imports torch-side code; only when running

        async with emulator as emu:
            self.emu = emu
            if new_world:
                await asyncio.to_thread(save_world, self.world_path, emu.state, emu.world)
            settings = self.settings.model_copy(
                update={"dev_guild_id": emu.guild.id, "discord_token": SecretStr(emu.token)}
            )
            with emu.patch_discord():
                async with open_app(settings) as bot:
                    async with connected(emu, bot, sync_global=True):
                        emu.add_listener(self._on_message_event)
                        if self.interactive:
                            where = "a new world" if new_world else "the world saved"
                            self._print(
                                f"hfcord playground: you are {self.session.user_name} in "
                                f"#{self.session.channel_name} of {emu.guild.name} ({where} in "
                                f"{self.world_path}; :reset for a new one). "
                                "Type /help for the bot's commands, :help for the playground's."
                            )
                        try:
                            return await self._loop(stdin)
                        finally:
                            # Keep threads opened this session (chats) for the next run.
                            await asyncio.to_thread(
                                save_world, self.world_path, emu.state, emu.world
                            )

    async def _loop(self, stdin: TextIO) -> Outcome:
        loop = asyncio.get_running_loop()
        while True:
            if self.interactive:
                prompt = f"{self.session.user_name}@#{self.session.channel_name}> "
                try:
                    line = await loop.run_in_executor(None, input, prompt)
                except EOFError:
                    return Outcome.QUIT
            else:
                line = await loop.run_in_executor(None, stdin.readline)
                if not line:
                    return Outcome.QUIT
            outcome = await self.handle(line.strip())
            if outcome is not Outcome.CONTINUE:
                return outcome

    # -- one line ----------------------------------------------------------------------

    async def handle(self, line: str) -> Outcome:
        """Run one line; say whether to go on, quit, or start a new world."""
        if not line or line.startswith("#"):
            return Outcome.CONTINUE
        if line.startswith(":"):
            return await self._control(line[1:].strip())
        if not line.startswith("/"):
            self._print(
                "Commands start with / (try /help); playground controls with : (try :help)."
            )
            return Outcome.CONTINUE
        if not self.interactive:
            self._print(f"> {line}")
        try:
            await self._slash(line)
        except SimError as exc:
            self._fail(str(exc))
        return Outcome.CONTINUE

    async def _slash(self, line: str) -> None:
        emu = self.emu
        channel = self._channel()
        guild = emu.state.guild_of(channel)
        command = emu.command(command_name(line), guild=guild)
        parsed = parse_command_line(line, command)
        values: dict[str, object] = dict(parsed.options)
        for option in leaf_options(command, list(parsed.path)):
            raw = values.get(option["name"])
            if option["type"] == ATTACHMENT and isinstance(raw, str):
                upload = await asyncio.to_thread(_read_upload, raw)
                if upload is None:
                    self._fail(f"no file at {raw} for option {option['name']!r}")
                    return
                values[option["name"]] = emu.attachment(*upload)
        inter = await emu.slash(
            parsed.qualified_name,
            values,
            user=self._user(),
            channel=channel,
            bypass_permissions=True,  # as a server admin may allow; the bot's checks still apply
        )
        await self._await_final(inter)
        thread = inter.original.thread if inter.original is not None else None
        if thread is not None and not inter.failed:
            # /chat opened a thread: go on there, as Discord's client does.
            self.session.channel_name = thread.name
            self._print(f"Now in #{thread.name} (the chat's thread).")

    async def _await_final(self, inter: SimInteraction) -> None:
        try:
            await inter.final(timeout=self.timeout)
        except InteractionFailed:
            self._fail("The application did not respond (the bot did not answer within 3 s).")
        except InteractionTimeout:
            self._fail(f"No final answer within {self.timeout:.0f} s.")

    async def _control(self, text: str) -> Outcome:
        emu = self.emu
        word, _, rest = text.partition(" ")
        rest = rest.strip()
        if word in ("quit", "q", "exit"):
            return Outcome.QUIT
        if word == "reset" and not rest:
            self.session.last_said = None
            self.session.printed.clear()
            return Outcome.RESET
        if word == "help":
            self._print(HELP)
        elif word == "as" and rest in ("admin", "member"):
            self.session.user_name = rest
            self._print(f"You are now {rest}.")
        elif word == "in" and rest in ("general", "thread", "other", "dm"):
            self.session.channel_name = {
                "general": emu.channel.name,
                "thread": emu.thread.name,
                "other": emu.other_channel.name,
                "dm": DM_CHANNEL,
            }[rest]
            self._print(f"Now in {self._where()}.")
        elif word in ("say", "mention") and rest:
            if word == "mention":
                await self._post(
                    f"{emu.bot_user.mention} {rest}", shown=f"@{emu.bot_user.name} {rest}"
                )
            else:
                await self._post(rest, shown=rest)
        elif word == "reply" and rest:
            mine = self._last_bot_message()
            if mine is None:
                self._fail(f"No message of mine in {self._where()} to reply to; try :mention.")
                return Outcome.CONTINUE
            await self._post(rest, shown=rest, reply_to=mine)
        elif word == "menu" and rest:
            if self.session.last_said is None:
                self._fail("Post a message with :say first; :menu runs an action on it.")
                return Outcome.CONTINUE
            try:
                inter = await emu.context_menu(
                    rest, self.session.last_said, user=self._user(), bypass_permissions=True
                )
            except SimError as exc:
                self._fail(str(exc))
                return Outcome.CONTINUE
            await self._await_final(inter)
        elif word == "click" and rest:
            await self._click(rest)
        else:
            self._fail(f"Unknown control :{text}; try :help.")
        return Outcome.CONTINUE

    async def _post(self, text: str, *, shown: str, reply_to: SimMessage | None = None) -> None:
        """Post ``text`` as the current user here, then wait for the bot's answer, if any."""
        posted = await self.emu.post_message(self._channel(), self._user(), text, reply_to=reply_to)
        self.session.last_said = posted
        how = "replied" if reply_to is not None else "said"
        self._print(f"{self.session.user_name} {how}: {shown}")
        await self._await_answer(posted)

    async def _await_answer(self, posted: SimMessage) -> None:
        """Wait until the bot's answer to ``posted`` is final (no Stop button left and quiet
        for a moment), or return when no answer starts within ANSWER_START_S."""
        loop = asyncio.get_running_loop()
        channel = posted.channel
        started = loop.time()

        def replies() -> list[SimMessage]:
            return [
                m
                for m in channel.messages
                if m.id > posted.id and m.author is self.emu.bot_user and not m.deleted
            ]

        while True:
            await asyncio.sleep(0.05)
            now = loop.time()
            found = replies()
            if not found:
                if now - started >= ANSWER_START_S:
                    return  # not a message the bot answers (or it only reacted)
                continue
            busy = any(b.label == "Stop" and not b.disabled for m in found for b in m.buttons)
            if not busy and now - self._last_bot_activity >= ANSWER_QUIET_S:
                return
            if now - started > self.timeout:
                self._fail(f"No final answer within {self.timeout:.0f} s.")
                return

    def _last_bot_message(self) -> SimMessage | None:
        channel = self._channel()
        for message in reversed(channel.messages):
            if message.author is self.emu.bot_user and not message.deleted:
                return message
        return None

    async def _click(self, label: str) -> None:
        emu = self.emu
        for message in reversed(emu.bot_messages):
            if not message.deleted and any(
                b.label == label and not b.disabled for b in message.buttons
            ):
                try:
                    inter = await emu.click(message, label=label, user=self._user())
                except SimError as exc:
                    self._fail(str(exc))
                    return
                await self._await_final(inter)
                return
        self._fail(f"No message shows a {label!r} button right now.")

    # -- output ------------------------------------------------------------------------

    def _on_message_event(self, event: MessageEvent) -> None:
        message = event.message
        if message.author is not self.emu.bot_user:
            return
        self._last_bot_activity = asyncio.get_running_loop().time()
        owner = self.emu.interaction_for(message)
        if message.ephemeral and owner is not None and owner.user is not self._user():
            return  # someone else's private reply
        tag = "bot (only you see this)" if message.ephemeral else "bot"
        if event.kind == "delete":
            self._print(f"[{tag}] (deleted a message)")
            self.session.printed.pop(message.id, None)
            return
        if message.loading:
            self._print(f"[{tag}] is thinking…")
            self.session.printed[message.id] = ("", "")
            return
        body, extras = message.text, _extras(message)
        before, extras_before = self.session.printed.get(message.id, ("", ""))
        if body != before:
            if before and body.startswith(before):
                self._print(f"[{tag}, streaming] …{body[len(before) :]}")
            elif before:
                self._print(f"[{tag}, edited]\n{body}")
            else:
                self._print(f"[{tag}]\n{body}")
        if extras != extras_before and extras:
            self._print(extras)
        self.session.printed[message.id] = (body, extras)

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _fail(self, text: str) -> None:
        self.session.failures += 1
        self._print(f"! {text}")

    def _user(self) -> SimUser:
        return self.emu.admin if self.session.user_name == "admin" else self.emu.member

    def _channel(self) -> SimChannel:
        emu = self.emu
        name = self.session.channel_name
        if name == DM_CHANNEL:
            return emu.dm(self._user())
        named = {
            emu.channel.name: emu.channel,
            emu.thread.name: emu.thread,
            emu.other_channel.name: emu.other_channel,
        }
        if name in named:
            return named[name]
        threads = [c for c in emu.guild.channels if c.is_thread and c.name == name]
        if not threads:  # e.g. a chat's thread of a world since reset
            self.session.channel_name = emu.channel.name
            return emu.channel
        return threads[-1]  # the newest of that name

    def _where(self) -> str:
        name = self.session.channel_name
        return "your DMs with the bot" if name == DM_CHANNEL else f"#{name}"


def _read_upload(raw: str) -> tuple[str, bytes] | None:
    """(file name, bytes) of a local file given as an attachment option, or None."""
    path = Path(raw).expanduser()
    if not path.is_file():
        return None
    return path.name, path.read_bytes()


def _extras(message: SimMessage) -> str:
    """Files and buttons of a message, as one line."""
    parts = []
    for attachment in message.attachments:
        kind = attachment.content_type or "file"
        parts.append(f"[file: {attachment.filename}, {attachment.size:,} bytes, {kind}]")
    parts.extend(
        f"[{b.label}{' (disabled)' if b.disabled else ''}]" for b in message.buttons if b.label
    )
    return " ".join(parts)
