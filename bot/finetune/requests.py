"""What `/finetune start` asks for, from the request to the worker's spec.

Uploaded files are staged in the job's folder first; then the data is parsed exactly as the
worker will parse it, from those files, in an isolated process (`bot.isolation`: bounded memory
and time, never the bot process), with the row and size limits the worker applies again. The
job row keeps the rest as ``params``, from which :func:`spec_for_job` builds the worker's
:class:`JobSpec`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.errors import UserFacingError
from bot.finetune.records import FineTuneJob
from bot.isolation import IsolationError, IsolationLimits, run_isolated
from models.training.checks import summarize_sources
from models.training.datasets import (
    ColumnSpec,
    DataLimits,
    DatasetError,
    DatasetSummary,
    TrainTask,
)
from models.training.datasets.hub import check_hub_name_syntax
from models.training.spec import DataSource, Hyperparameters, JobSpec, JobSpecError

if TYPE_CHECKING:
    from bot.finetune.base_models import BaseModel

# Uploaded files, as named in the job's folder.
TRAIN_FILE = "train.data"
VALIDATION_FILE = "validation.data"


class FineTuneError(UserFacingError):
    """A fine-tuning request or action refused; the message says why and what to do."""


@dataclass(frozen=True)
class Upload:
    """A data file given in Discord: its name (for messages) and bytes."""

    filename: str
    data: bytes = field(repr=False)

    def source(self, staged_as: str) -> DataSource:
        """The worker's source once the file is staged as ``staged_as``."""
        return DataSource(path=staged_as, display_name=self.filename)


@dataclass(frozen=True)
class HubData:
    """A hub dataset split given as ``name[:config]`` and a split."""

    name: str
    config: str | None = None
    split: str = "train"

    @classmethod
    def parse(cls, value: str, split: str | None, *, default_split: str = "train") -> HubData:
        """A hub dataset as written in Discord; anything else (a path, a link, ``hf://``...)
        is refused with a sentence."""
        value = value.strip()
        if "://" in value or value.startswith(("/", "~", ".")):
            raise FineTuneError(
                "A dataset is named by its Hugging Face hub id (`name` or `owner/name`, with "
                "`:config` if it has several); paths and links are not accepted."
            )
        name, _, config = value.partition(":")
        if not name.strip():
            raise FineTuneError("Write the hub dataset as `name` or `name:config`.")
        data = cls(name.strip(), config.strip() or None, (split or default_split).strip())
        data.check()
        return data

    def check(self) -> None:
        """Refuse names that are not a hub dataset's (cheap: no import, no file access)."""
        try:
            check_hub_name_syntax(self.name, self.config, self.split)
        except DatasetError as exc:
            raise FineTuneError(str(exc)) from None

    def describe(self) -> str:
        return f"{self.name}{':' + self.config if self.config else ''} [{self.split}]"

    def source(self) -> DataSource:
        return DataSource(hub_name=self.name, hub_config=self.config, hub_split=self.split)


DataInput = Upload | HubData


@dataclass(frozen=True)
class JobRequest:
    """Everything `/finetune start` asks for (validated by `FineTuneManager.submit`)."""

    guild_id: int
    channel_id: int
    requested_by: int
    task: TrainTask
    base_model: str
    train: DataInput
    validation: DataInput | None = None
    columns: ColumnSpec = field(default_factory=ColumnSpec)
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)

    @property
    def data_source(self) -> str:
        """The training data as job lines show it."""
        return describe_input(self.train)

    def stored_params(self, train_examples: int, base: BaseModel) -> dict[str, Any]:
        """The job row's ``params``: what the worker needs besides the task and base model,
        and how Discord names the base model."""
        return {
            "hyperparameters": asdict(self.hyperparameters),
            "columns": asdict(self.columns),
            "train": _source_params(self.train, TRAIN_FILE),
            "validation": _source_params(self.validation, VALIDATION_FILE),
            "train_examples": train_examples,
            "base_model": {"label": base.label, "job": base.job_id},
        }


@dataclass(frozen=True)
class SubmittedJob:
    """A job accepted into the queue, with what validation found."""

    job: FineTuneJob
    train: DatasetSummary
    validation: DatasetSummary | None
    position: int  # 0: starts now; n: n jobs ahead of it


def describe_input(data: DataInput) -> str:
    return data.filename if isinstance(data, Upload) else f"hub {data.describe()}"


# Reading a hub split loads the datasets library (pyarrow and its threads map over a GB of
# address space before any data): the isolated process gets this much more memory for it.
HUB_LIBRARY_MB = 3072


def check_parameters(request: JobRequest) -> None:
    """The hyper-parameters in range (cheap; before anything is staged)."""
    try:
        request.hyperparameters.check()
    except JobSpecError as exc:
        raise FineTuneError(str(exc)) from None


def staged_source(data: DataInput, folder: Path, file_name: str) -> DataSource:
    """Where the worker reads ``data`` once staged in ``folder``: the file, or the hub split."""
    if isinstance(data, Upload):
        return data.source(str(folder / file_name))
    return data.source()


def summarize_staged(
    request: JobRequest, folder: Path, limits: DataLimits, isolation: IsolationLimits
) -> tuple[DatasetSummary, DatasetSummary | None]:
    """Blocking: the staged data parsed exactly as the worker will parse it, in an isolated
    process (the bot process never parses what a server sends)."""
    inputs = [request.train] + ([request.validation] if request.validation is not None else [])
    if any(isinstance(data, HubData) for data in inputs):
        isolation = IsolationLimits(
            memory_mb=isolation.memory_mb + HUB_LIBRARY_MB,
            timeout_s=isolation.timeout_s,
            env=isolation.env,
        )
    validation = None
    if request.validation is not None:
        validation = staged_source(request.validation, folder, VALIDATION_FILE)
    try:
        return run_isolated(
            summarize_sources,
            request.task,
            request.columns,
            staged_source(request.train, folder, TRAIN_FILE),
            validation,
            limits,
            limits=isolation,
            refusals=(DatasetError, JobSpecError),
        )
    except (DatasetError, JobSpecError) as exc:
        raise FineTuneError(str(exc)) from None
    except IsolationError as exc:
        subject = " and ".join(describe_input(data) for data in inputs)
        raise FineTuneError(exc.sentence(subject, advice="try less data")) from None


def _source_params(data: DataInput | None, file_name: str) -> dict[str, Any] | None:
    if data is None:
        return None
    return asdict(data.source(file_name) if isinstance(data, Upload) else data.source())


def stage_inputs(folder: Path, request: JobRequest) -> None:
    """Blocking: create ``folder`` and write the uploaded files into it."""
    folder.mkdir(parents=True, exist_ok=False)
    if isinstance(request.train, Upload):
        (folder / TRAIN_FILE).write_bytes(request.train.data)
    if isinstance(request.validation, Upload):
        (folder / VALIDATION_FILE).write_bytes(request.validation.data)


def spec_for_job(
    job: FineTuneJob,
    *,
    run_dir: Path,
    output_dir: Path,
    torch_threads: int | None,
    device: str | None,
    progress_interval_s: float,
    limits: DataLimits | None = None,
    max_parameters: int | None = None,
) -> JobSpec:
    """The worker's spec for a stored job whose files were staged in ``run_dir``: it loads
    the stored base model (the resolved reference) and re-applies the limits."""
    limits = limits or DataLimits()
    params = job.params

    def source(value: dict[str, Any] | None) -> DataSource | None:
        if value is None:
            return None
        values = dict(value)
        if values.get("path") is not None:
            values["path"] = str(run_dir / values["path"])
        return DataSource(**values)

    train = source(params["train"])
    assert train is not None
    return JobSpec(
        task=job.task,
        base_model=job.base_model,
        train=train,
        validation=source(params.get("validation")),
        columns=ColumnSpec(**params.get("columns", {})),
        output_dir=str(output_dir),
        torch_threads=torch_threads,
        device=device,
        progress_interval_s=progress_interval_s,
        base_model_label=job.base_label,
        max_rows=limits.max_rows,
        hub_max_bytes=limits.max_bytes,
        max_parameters=max_parameters,
        **params["hyperparameters"],
    )
