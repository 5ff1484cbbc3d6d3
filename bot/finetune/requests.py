"""What `/finetune start` asks for, from the request to the worker's spec.

Validation parses the data exactly as the worker will (blocking: run it off the event loop);
uploaded files are staged in the job's folder, and the job row keeps the rest as ``params``,
from which :func:`spec_for_job` builds the worker's :class:`JobSpec`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bot.errors import UserFacingError
from bot.finetune.records import FineTuneJob
from models.training.datasets import (
    ColumnSpec,
    DatasetError,
    DatasetSummary,
    ParsedDataset,
    TrainTask,
    check_validation,
    parse_dataset,
)
from models.training.spec import DataSource, Hyperparameters, JobSpec, JobSpecError

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
        name, _, config = value.strip().partition(":")
        if not name.strip():
            raise FineTuneError("Write the hub dataset as `name` or `name:config`.")
        return cls(name.strip(), config.strip() or None, (split or default_split).strip())

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

    def stored_params(self, train_examples: int) -> dict[str, Any]:
        """The job row's ``params``: what the worker needs besides the task and base model."""
        return {
            "hyperparameters": asdict(self.hyperparameters),
            "columns": asdict(self.columns),
            "train": _source_params(self.train, TRAIN_FILE),
            "validation": _source_params(self.validation, VALIDATION_FILE),
            "train_examples": train_examples,
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


def _load_input(data: DataInput, task: TrainTask, columns: ColumnSpec) -> ParsedDataset:
    if isinstance(data, Upload):  # not staged yet: parsed from memory, as the file will be
        return parse_dataset(data.data, task, filename=data.filename, columns=columns)
    return data.source().load(task, columns)


def validate_request(
    request: JobRequest, check_dir: Path
) -> tuple[DatasetSummary, DatasetSummary | None]:
    """Blocking: parameters, then the data parsed exactly as the worker will parse it.

    ``check_dir`` is where the job's files will be staged (it must not hold anything yet).
    """
    try:
        JobSpec.with_hyperparameters(
            request.hyperparameters,
            task=request.task,
            base_model=request.base_model,
            train=DataSource(path=str(check_dir / TRAIN_FILE)),
            output_dir=str(check_dir),
        ).check()
        train = _load_input(request.train, request.task, request.columns)
        validation = None
        if request.validation is not None:
            validation = _load_input(request.validation, request.task, request.columns)
            check_validation(train, validation)
    except (DatasetError, JobSpecError) as exc:
        raise FineTuneError(str(exc)) from None
    return train.summary(), validation.summary() if validation is not None else None


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
) -> JobSpec:
    """The worker's spec for a stored job whose files were staged in ``run_dir``."""
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
        **params["hyperparameters"],
    )
