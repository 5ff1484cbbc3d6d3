"""A bare discord.py bot (no hfcord code) with one command per interaction path, for testing the
emulator itself."""

from __future__ import annotations

import asyncio
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

PNG_1X1 = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82"
)


class StopView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=60)
        self.clicked_by: list[int] = []

    @discord.ui.button(label="Stop", style=discord.ButtonStyle.danger, custom_id="stop")
    async def stop_button(
        self, interaction: discord.Interaction, button: discord.ui.Button
    ) -> None:
        self.clicked_by.append(interaction.user.id)
        await interaction.response.edit_message(content="stopped", view=None)


class BareBot(commands.Bot):
    """Test commands that exercise each interaction path the emulator supports."""

    def __init__(
        self, guild_id: int, *, intents: discord.Intents | None = None, **options: Any
    ) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents or discord.Intents.default(),
            **options,
        )
        self.guild_id = guild_id
        self.errors: list[BaseException] = []
        self.release = asyncio.Event()
        self.views: list[StopView] = []
        self.seen_messages: list[discord.Message] = []
        self._register()

    async def setup_hook(self) -> None:
        await self.tree.sync()
        guild = discord.Object(self.guild_id)
        self.tree.add_command(
            app_commands.Command(
                name="guildonly", description="A guild command", callback=_guildonly
            ),
            guild=guild,
        )
        await self.tree.sync(guild=guild)

    async def on_message(self, message: discord.Message) -> None:
        self.seen_messages.append(message)

    def _register(self) -> None:
        tree = self.tree
        bot = self

        @tree.error
        async def on_error(
            interaction: discord.Interaction, error: app_commands.AppCommandError
        ) -> None:
            bot.errors.append(error)

        @tree.command(description="Reply at once")
        @app_commands.describe(text="What to echo", times="How many times")
        async def echo(
            interaction: discord.Interaction, text: str, times: app_commands.Range[int, 1, 3] = 1
        ) -> None:
            await interaction.response.send_message(
                " ".join([text] * times), allowed_mentions=discord.AllowedMentions.none()
            )

        @tree.command(description="Defer, then answer")
        async def slow(interaction: discord.Interaction, ephemeral: bool = False) -> None:
            await interaction.response.defer(thinking=True, ephemeral=ephemeral)
            await asyncio.sleep(0.05)
            await interaction.followup.send(
                "done slowly", allowed_mentions=discord.AllowedMentions.none()
            )
            await interaction.followup.send(
                "and a second message", allowed_mentions=discord.AllowedMentions.none()
            )

        @tree.command(description="Never answer")
        async def ignore(interaction: discord.Interaction) -> None:
            return None

        @tree.command(description="Answer too late")
        async def late(interaction: discord.Interaction) -> None:
            await bot.release.wait()
            try:
                await interaction.response.send_message("too late")
            except discord.HTTPException as exc:
                bot.errors.append(exc)

        @tree.command(description="Defer, wait for the test, then follow up")
        async def wait(interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            await bot.release.wait()
            try:
                await interaction.followup.send("after waiting")
            except discord.HTTPException as exc:
                bot.errors.append(exc)

        @tree.command(description="Send too much")
        async def long(interaction: discord.Interaction) -> None:
            try:
                await interaction.response.send_message("x" * 2001)
            except discord.HTTPException as exc:
                bot.errors.append(exc)
                await interaction.response.send_message("x" * 2000)

        @tree.command(description="Ping everyone (badly)")
        async def ping(interaction: discord.Interaction) -> None:
            await interaction.response.send_message(f"@everyone hi {interaction.user.mention}")

        @tree.command(description="A message with a Stop button")
        async def buttons(interaction: discord.Interaction) -> None:
            view = StopView()
            bot.views.append(view)
            await interaction.response.send_message("running", view=view)

        @tree.command(description="Read an uploaded file")
        async def upload(interaction: discord.Interaction, file: discord.Attachment) -> None:
            data = await file.read()
            await interaction.response.send_message(f"{file.filename}:{file.size}:{data.decode()}")

        @tree.command(description="Send a picture")
        async def picture(interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            await interaction.followup.send(
                "see", file=discord.File(__import__("io").BytesIO(PNG_1X1), "curve.png")
            )

        @tree.command(description="Stream edits")
        async def stream(interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            text = ""
            for word in ("one", "two", "three"):
                text = f"{text} {word}".strip()
                await interaction.edit_original_response(content=text)
                await asyncio.sleep(
                    0.3
                )  # longer than the quiet period: final() must wait for the handler

        @tree.command(description="Post in the channel directly")
        async def announce(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("posting", ephemeral=True)
            assert interaction.channel is not None
            message = await interaction.channel.send("announcement")  # type: ignore[union-attr]
            await message.edit(content="announcement (edited)")

        @tree.command(description="Admins only")
        @app_commands.default_permissions(administrator=True)
        async def secret(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("secret")

        group = app_commands.Group(name="context", description="Channel context")

        @group.command(name="set", description="Set the context")
        async def context_set(interaction: discord.Interaction, text: str) -> None:
            await interaction.response.send_message(f"set:{text}")

        @group.command(name="show", description="Show the context")
        async def context_show(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("show")

        tree.add_command(group)

        @tree.context_menu(name="Count words")
        async def count_words(interaction: discord.Interaction, message: discord.Message) -> None:
            await interaction.response.send_message(
                f"{len(message.content.split())} words", ephemeral=True
            )


class ShardedBareBot(BareBot, commands.AutoShardedBot):
    """BareBot over gateway shards (``shard_ids`` of ``shard_count``; all when None); records
    the (guild id, shard id) of every interaction it receives in ``received``."""

    def __init__(
        self, guild_id: int, *, shard_count: int, shard_ids: list[int] | None = None
    ) -> None:
        super().__init__(guild_id, shard_count=shard_count, shard_ids=shard_ids)
        self.received: list[tuple[int | None, int | None]] = []

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        guild = interaction.guild
        self.received.append((interaction.guild_id, guild.shard_id if guild else None))


async def _guildonly(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("guild command")
