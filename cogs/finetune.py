"""/finetune: admins fine-tune models from Discord, then promote or roll back what serves here."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import admin_only
from bot.client import HFCordBot
from bot.errors import UserFacingError
from bot.finetune import SERVED_TASK, FineTuneManager, HubData, JobRequest, Upload
from bot.finetune.render import (
    cancel_text,
    default_text,
    deleted_text,
    format_submitted,
    job_list_text,
    promoted_text,
    rollback_text,
    status_overview_text,
)
from bot.reply import defer, send
from bot.uploads import fetch_attachment
from models.specs import Task
from models.training.datasets import ColumnSpec, TrainTask
from models.training.spec import DEFAULT_HYPERPARAMETERS as DEFAULTS
from models.training.spec import Hyperparameters

TASK_CHOICES = [
    app_commands.Choice(
        name="text-classification (sentiment, sentence pairs)", value="text-classification"
    ),
    app_commands.Choice(name="token-classification (named entities)", value="token-classification"),
    app_commands.Choice(name="question-answering (extractive, SQuAD)", value="question-answering"),
    app_commands.Choice(name="causal-lm (text generation)", value="causal-lm"),
]
SERVED_CHOICES = [
    app_commands.Choice(name=f"{served} (from {task.value})", value=served.value)
    for task, served in SERVED_TASK.items()
]
# Discord's option bounds: the ranges Hyperparameters.check enforces, a little tighter where
# a value that passes would be no use (epochs near 0, a learning rate near 1).
MIN_EPOCHS = 0.01
MIN_LEARNING_RATE, MAX_LEARNING_RATE = 1e-8, 0.5
BATCH_SIZE_MIN, BATCH_SIZE_MAX = Hyperparameters.BATCH_SIZE_RANGE
MAX_LENGTH_MIN, MAX_LENGTH_MAX = Hyperparameters.MAX_LENGTH_RANGE
MAX_STEPS_MIN, MAX_STEPS_MAX = Hyperparameters.MAX_STEPS_RANGE


class FineTune(commands.Cog):
    finetune = app_commands.Group(
        name="finetune",
        description="Fine-tune models on your data and serve them in this server (admins)",
        guild_only=True,
        default_permissions=discord.Permissions(administrator=True),
    )

    def __init__(self, bot: HFCordBot) -> None:
        self.bot = bot

    def _manager(self) -> FineTuneManager:
        if not isinstance(self.bot.jobs, FineTuneManager):
            raise UserFacingError("Fine-tuning is switched off on this bot; ask its admin.")
        return self.bot.jobs

    @finetune.command(name="start")
    @app_commands.describe(
        task="What to train",
        base_model="Model to start from: a hub id (owner/name), a job of this server (job:12), "
        "or a folder the bot's operator offers",
        file="Training data: CSV/TSV/JSONL, CoNLL, SQuAD JSON or plain text",
        dataset="Or a Hugging Face hub dataset id: name or owner/name, with :config if needed",
        split="Hub dataset split to train on (default train)",
        validation_file="Validation data in the same format (default: 10% held out)",
        validation_split="Hub dataset split to evaluate on (e.g. validation)",
        text_column="Classification: the text column (detected if not given)",
        text_pair_column="Classification: the second sentence of a pair",
        label_column="Classification: the label column (detected if not given)",
        label_names="Classification: names for label values, e.g. 0=negative,1=positive",
        epochs=f"Passes over the training data (default {default_text(DEFAULTS.epochs)})",
        learning_rate=f"Learning rate (default {default_text(DEFAULTS.learning_rate)})",
        batch_size=f"Examples per step (default {default_text(DEFAULTS.batch_size)})",
        max_length=f"Max tokens per example (default {default_text(DEFAULTS.max_length)})",
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
        epochs: app_commands.Range[float, MIN_EPOCHS, Hyperparameters.MAX_EPOCHS] = (
            DEFAULTS.epochs
        ),
        learning_rate: app_commands.Range[
            float, MIN_LEARNING_RATE, MAX_LEARNING_RATE
        ] = DEFAULTS.learning_rate,
        batch_size: app_commands.Range[int, BATCH_SIZE_MIN, BATCH_SIZE_MAX] = DEFAULTS.batch_size,
        max_length: app_commands.Range[int, MAX_LENGTH_MIN, MAX_LENGTH_MAX] = DEFAULTS.max_length,
        max_steps: app_commands.Range[int, MAX_STEPS_MIN, MAX_STEPS_MAX] | None = (
            DEFAULTS.max_steps
        ),
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
        # The base model is resolved (and confined to what this server may use) on submit.
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
            validation.check()
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
            hyperparameters=Hyperparameters(
                epochs=float(epochs),
                learning_rate=float(learning_rate),
                batch_size=int(batch_size),
                max_length=int(max_length),
                max_steps=int(max_steps) if max_steps is not None else None,
            ),
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
        recent = await manager.recent_jobs(interaction.guild_id, limit=20)
        active = [manager.describe(j) for j in reversed(recent) if j.active]
        latest = manager.describe(recent[0]) if recent else None
        await send(interaction, status_overview_text(active, latest), ephemeral=True)

    @finetune.command(name="list")
    @admin_only()
    async def list_jobs(self, interaction: discord.Interaction[HFCordBot]) -> None:
        """This server's recent fine-tuning jobs."""
        manager = self._manager()
        assert interaction.guild_id is not None
        jobs = await manager.recent_jobs(interaction.guild_id, limit=15)
        await send(interaction, job_list_text(jobs), ephemeral=True)

    @finetune.command(name="cancel")
    @app_commands.describe(job="Job number")
    @admin_only()
    async def cancel(self, interaction: discord.Interaction[HFCordBot], job: int) -> None:
        """Cancel a queued or running job (it stops after the current step)."""
        manager = self._manager()
        assert interaction.guild_id is not None
        found = await manager.cancel(job, interaction.guild_id, interaction.user.id)
        await send(interaction, cancel_text(found, manager.cancel_grace_s))

    @finetune.command(name="delete")
    @app_commands.describe(job="A completed job whose model to delete (not one serving here)")
    @admin_only()
    async def delete(self, interaction: discord.Interaction[HFCordBot], job: int) -> None:
        """Delete a fine-tuned model to make room for new ones (the job's record stays)."""
        manager = self._manager()
        await defer(interaction, ephemeral=True)
        assert interaction.guild_id is not None
        found = await manager.delete_model(job, interaction.guild_id, interaction.user.id)
        stored = await manager.stored_models(interaction.guild_id)
        allowed = self.bot.settings.finetune_max_stored_models
        await send(interaction, deleted_text(found, stored, allowed), ephemeral=True)

    @finetune.command(name="promote")
    @app_commands.describe(job="A completed job whose model should serve this server")
    @admin_only()
    async def promote(self, interaction: discord.Interaction[HFCordBot], job: int) -> None:
        """Serve a fine-tuned model for its task in this server (other servers are unchanged)."""
        manager = self._manager()
        await defer(interaction)  # the model loads before it takes over
        assert interaction.guild_id is not None
        model = await manager.promote(job, interaction.guild_id, interaction.user.id)
        await send(interaction, promoted_text(model))

    @finetune.command(name="rollback")
    @app_commands.describe(task="The task whose promoted model to remove")
    @app_commands.choices(task=SERVED_CHOICES)
    @admin_only()
    async def rollback(self, interaction: discord.Interaction[HFCordBot], task: str) -> None:
        """Go back to the model that served before the last promotion (or the default)."""
        manager = self._manager()
        await defer(interaction)
        assert interaction.guild_id is not None
        served = Task(task)
        result = await manager.rollback(interaction.guild_id, served, interaction.user.id)
        await send(interaction, rollback_text(served, result))


async def setup(bot: HFCordBot) -> None:
    await bot.add_cog(FineTune(bot))
