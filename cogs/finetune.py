"""/finetune: admins fine-tune models from Discord, then promote or roll back what serves here."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import admin_only
from bot.client import HFCordBot
from bot.errors import UserFacingError
from bot.jobs import (
    SERVED_TASK,
    FineTuneJob,
    FineTuneManager,
    HubData,
    JobRequest,
    SubmittedJob,
    Upload,
    model_label,
)
from bot.reply import defer, send
from bot.uploads import fetch_attachment, off_loop
from models.refs import resolve_model_ref
from models.training.datasets import ColumnSpec, DatasetSummary, TrainTask

TASK_CHOICES = [
    app_commands.Choice(
        name="text-classification (sentiment, sentence pairs)", value="text-classification"
    ),
    app_commands.Choice(name="token-classification (named entities)", value="token-classification"),
    app_commands.Choice(name="question-answering (extractive, SQuAD)", value="question-answering"),
    app_commands.Choice(name="causal-lm (text generation)", value="causal-lm"),
]
SERVED_CHOICES = [
    app_commands.Choice(name=f"{served} (from {task.value})", value=served)
    for task, served in SERVED_TASK.items()
]


def _code_block(text: str) -> str:
    # Sample rows are user data: keep them from closing the block early.
    return "```\n" + text.replace("```", "'''") + "\n```"


def format_submitted(submitted: SubmittedJob, channel_mention: str) -> str:
    job = submitted.job
    when = (
        "starts now"
        if submitted.position == 0
        else f"is queued ({submitted.position} job(s) ahead of it)"
    )
    parts = [
        f"Fine-tune job **#{job.id}** {when}; its progress is posted in {channel_mention}.",
        "**Training data**",
        _code_block(submitted.train.describe()),
    ]
    if submitted.validation is not None:
        parts += ["**Validation data**", _code_block(submitted.validation.describe())]
    else:
        parts.append("-# No validation data given: 10% of the training data is held out.")
    return "\n".join(parts)


def format_job_line(job: FineTuneJob) -> str:
    return (
        f"**#{job.id}** · {job.status} · {job.task.value} · `{model_label(job.base_model)}` · "
        f"{job.data_source} · {job.created_at[:16].replace('T', ' ')} UTC"
    )


def summary_text(summary: DatasetSummary) -> str:
    return summary.describe()


class FineTune(commands.Cog):
    finetune = app_commands.Group(
        name="finetune",
        description="Fine-tune models on your data and serve them in this server (admins)",
        guild_only=True,
        default_permissions=discord.Permissions(administrator=True),
    )

    def __init__(self, bot: HFCordBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        if isinstance(self.bot.jobs, FineTuneManager):
            await self.bot.jobs.start(self.bot)

    async def cog_unload(self) -> None:
        if isinstance(self.bot.jobs, FineTuneManager):
            await self.bot.jobs.close()

    def _manager(self) -> FineTuneManager:
        if not isinstance(self.bot.jobs, FineTuneManager):
            raise UserFacingError("Fine-tuning is switched off on this bot; ask its admin.")
        return self.bot.jobs

    @finetune.command(name="start")
    @app_commands.describe(
        task="What to train",
        base_model="Model to start from: a hub id (owner/name) or a folder under the bot's model roots",
        file="Training data: CSV/TSV/JSONL, CoNLL, SQuAD JSON or plain text",
        dataset="Or a Hugging Face hub dataset: name or name:config",
        split="Hub dataset split to train on (default train)",
        validation_file="Validation data in the same format (default: 10% held out)",
        validation_split="Hub dataset split to evaluate on (e.g. validation)",
        text_column="Classification: the text column (detected if not given)",
        text_pair_column="Classification: the second sentence of a pair",
        label_column="Classification: the label column (detected if not given)",
        label_names="Classification: names for label values, e.g. 0=negative,1=positive",
        epochs="Passes over the training data (default 3)",
        learning_rate="Learning rate (default 5e-5)",
        batch_size="Examples per step (default 16)",
        max_length="Max tokens per example (default 128)",
        max_steps="Stop after this many steps (overrides epochs)",
    )
    @app_commands.choices(task=TASK_CHOICES)
    @admin_only()
    async def start(
        self,
        interaction: discord.Interaction[HFCordBot],
        task: str,
        base_model: str,
        file: discord.Attachment | None = None,
        dataset: str | None = None,
        split: str | None = None,
        validation_file: discord.Attachment | None = None,
        validation_split: str | None = None,
        text_column: str | None = None,
        text_pair_column: str | None = None,
        label_column: str | None = None,
        label_names: str | None = None,
        epochs: app_commands.Range[float, 0.01, 100.0] = 3.0,
        learning_rate: app_commands.Range[float, 1e-8, 0.5] = 5e-5,
        batch_size: app_commands.Range[int, 1, 1024] = 16,
        max_length: app_commands.Range[int, 8, 8192] = 128,
        max_steps: app_commands.Range[int, 1, 1_000_000] | None = None,
    ) -> None:
        """Fine-tune a model on an uploaded file or a hub dataset."""
        manager = self._manager()
        await defer(interaction, ephemeral=True)
        settings = self.bot.settings
        if (file is None) == (dataset is None):
            raise UserFacingError(
                "Give the training data either as an attached `file` or as a hub `dataset` "
                "(name or name:config), not both."
            )
        if validation_file is not None and validation_split is not None:
            raise UserFacingError("Give `validation_file` or `validation_split`, not both.")
        # Same rule as any model a user names: a hub id, or a folder under the allowed roots.
        await off_loop(resolve_model_ref, base_model, settings.allowed_model_roots)
        cap = settings.finetune_upload_max_bytes
        train: Upload | HubData
        if file is not None:
            train = Upload(file.filename, await fetch_attachment(file, max_bytes=cap))
        else:
            assert dataset is not None
            train = HubData.parse(dataset, split)
        validation: Upload | HubData | None = None
        if validation_file is not None:
            validation = Upload(
                validation_file.filename, await fetch_attachment(validation_file, max_bytes=cap)
            )
        elif validation_split is not None:
            if not isinstance(train, HubData):
                raise UserFacingError(
                    "`validation_split` goes with a hub `dataset`; with a file, "
                    "attach `validation_file` instead."
                )
            validation = HubData(train.name, train.config, validation_split.strip())
        assert interaction.guild_id is not None and interaction.channel_id is not None
        request = JobRequest(
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            requested_by=interaction.user.id,
            task=TrainTask(task),
            base_model=base_model.strip(),
            train=train,
            validation=validation,
            columns=ColumnSpec(text_column, text_pair_column, label_column, label_names),
            epochs=float(epochs),
            learning_rate=float(learning_rate),
            batch_size=int(batch_size),
            max_length=int(max_length),
            max_steps=int(max_steps) if max_steps is not None else None,
        )
        submitted = await manager.submit(request)
        mention = f"<#{interaction.channel_id}>"
        await send(interaction, format_submitted(submitted, mention), ephemeral=True)

    @finetune.command(name="status")
    @app_commands.describe(job="Job number (default: this server's running and queued jobs)")
    @admin_only()
    async def status(
        self, interaction: discord.Interaction[HFCordBot], job: int | None = None
    ) -> None:
        """Progress and results of a fine-tuning job."""
        manager = self._manager()
        assert interaction.guild_id is not None
        if job is not None:
            found = await manager.job_in_guild(job, interaction.guild_id)
            await send(interaction, manager.describe(found), ephemeral=True)
            return
        recent = await manager.repo.list_for_guild(interaction.guild_id, limit=20)
        active = [j for j in recent if j.active]
        if active:
            text = "\n\n".join(manager.describe(j) for j in reversed(active))
        elif recent:
            text = "No job is running or queued. The latest one:\n" + manager.describe(recent[0])
        else:
            text = "No fine-tuning jobs in this server yet; start one with `/finetune start`."
        await send(interaction, text, ephemeral=True)

    @finetune.command(name="list")
    @admin_only()
    async def list_jobs(self, interaction: discord.Interaction[HFCordBot]) -> None:
        """This server's recent fine-tuning jobs."""
        manager = self._manager()
        assert interaction.guild_id is not None
        jobs = await manager.repo.list_for_guild(interaction.guild_id, limit=15)
        if not jobs:
            text = "No fine-tuning jobs in this server yet; start one with `/finetune start`."
        else:
            text = "**Fine-tuning jobs (newest first)**\n" + "\n".join(map(format_job_line, jobs))
        await send(interaction, text, ephemeral=True)

    @finetune.command(name="cancel")
    @app_commands.describe(job="Job number")
    @admin_only()
    async def cancel(self, interaction: discord.Interaction[HFCordBot], job: int) -> None:
        """Cancel a queued or running job (it stops after the current step)."""
        manager = self._manager()
        assert interaction.guild_id is not None
        found = await manager.cancel(job, interaction.guild_id, interaction.user.id)
        if found.status == "cancelled":
            text = f"Cancelled job #{job} before it started."
        else:
            text = (
                f"Cancelling job #{job}: it stops after the current step "
                f"(or is stopped within {manager.cancel_grace_s:.0f} s). Nothing is saved."
            )
        await send(interaction, text)

    @finetune.command(name="promote")
    @app_commands.describe(job="A completed job whose model should serve this server")
    @admin_only()
    async def promote(self, interaction: discord.Interaction[HFCordBot], job: int) -> None:
        """Serve a fine-tuned model for its task in this server (other servers are unchanged)."""
        manager = self._manager()
        await defer(interaction)  # the model loads before it takes over
        assert interaction.guild_id is not None
        model = await manager.promote(job, interaction.guild_id, interaction.user.id)
        await send(
            interaction,
            f"Job #{job}'s model now serves **{model.task}** in this server; other servers keep "
            f"their model. Undo with `/finetune rollback task:{model.task}`.",
        )

    @finetune.command(name="rollback")
    @app_commands.describe(task="The task whose promoted model to remove")
    @app_commands.choices(task=SERVED_CHOICES)
    @admin_only()
    async def rollback(self, interaction: discord.Interaction[HFCordBot], task: str) -> None:
        """Go back to the model that served before the last promotion (or the default)."""
        manager = self._manager()
        await defer(interaction)
        assert interaction.guild_id is not None
        result = await manager.rollback(interaction.guild_id, task, interaction.user.id)
        if result.serving is None:
            now = "the default model serves it again"
        else:
            now = f"job #{result.serving.job_id}'s model serves it again"
        text = f"Rolled back **{task}** in this server: {now}."
        if result.skipped:
            gone = ", ".join(f"#{m.job_id}" for m in result.skipped)
            text += f"\n-# Skipped job(s) {gone}: their models no longer load."
        await send(interaction, text)


async def setup(bot: HFCordBot) -> None:
    await bot.add_cog(FineTune(bot))
