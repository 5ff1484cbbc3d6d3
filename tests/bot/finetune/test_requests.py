"""JobRequest: hub data names, validation off the loop, the stored params and the worker spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.finetune.records import FineTuneJob
from bot.finetune.requests import (
    FineTuneError,
    HubData,
    JobRequest,
    Upload,
    spec_for_job,
    stage_inputs,
    validate_request,
)
from models.training.datasets import ColumnSpec, TrainTask
from models.training.spec import DataSource, Hyperparameters, JobStatus

CSV = b"text,label\ngreat,pos\nawful,neg\nfine,pos\nbad,neg\n"


def _request(**values: object) -> JobRequest:
    fields: dict[str, object] = {
        "guild_id": 1,
        "channel_id": 2,
        "requested_by": 3,
        "task": TrainTask.TEXT_CLASSIFICATION,
        "base_model": "distilbert-base-uncased",
        "train": Upload("moods.csv", CSV),
    }
    fields.update(values)
    return JobRequest(**fields)  # type: ignore[arg-type]


def test_hub_data_is_name_and_config() -> None:
    data = HubData.parse(" glue:sst2 ", None)
    assert data == HubData("glue", "sst2", "train") and data.describe() == "glue:sst2 [train]"
    assert HubData.parse("imdb", "test ").describe() == "imdb [test]"
    with pytest.raises(FineTuneError, match="name:config"):
        HubData.parse(":x", None)


def test_stored_params_keep_their_shape() -> None:
    """The job row's params: the same JSON as before Hyperparameters existed."""
    request = _request(validation=HubData("glue", "sst2", "validation"))
    assert request.data_source == "moods.csv"
    assert request.stored_params(train_examples=4) == {
        "hyperparameters": {
            "epochs": 3.0,
            "learning_rate": 5e-05,
            "batch_size": 16,
            "max_length": 128,
            "max_steps": None,
        },
        "columns": {
            "text": None,
            "text_pair": None,
            "label": None,
            "label_names": None,
        },
        "train": {
            "path": "train.data",
            "hub_name": None,
            "hub_config": None,
            "hub_split": "train",
            "display_name": "moods.csv",
        },
        "validation": {
            "path": None,
            "hub_name": "glue",
            "hub_config": "sst2",
            "hub_split": "validation",
            "display_name": None,
        },
        "train_examples": 4,
    }


def test_validation_summarises_the_data_and_refuses_bad_parameters(tmp_path: Path) -> None:
    train, validation = validate_request(_request(), tmp_path / "job")
    assert train.num_examples == 4 and validation is None
    with pytest.raises(FineTuneError, match="batch size must be between 1 and 1024"):
        validate_request(_request(hyperparameters=Hyperparameters(batch_size=0)), tmp_path / "j")


def test_staged_inputs_make_the_workers_spec(tmp_path: Path) -> None:
    request = _request(
        columns=ColumnSpec(label="label"),
        hyperparameters=Hyperparameters(epochs=1.0, max_steps=5),
    )
    run_dir = tmp_path / "jobs" / "9"
    stage_inputs(run_dir, request)
    assert (run_dir / "train.data").read_bytes() == CSV
    job = FineTuneJob(
        id=9, guild_id=1, channel_id=2, status_message_id=None, requested_by=3,
        task=request.task, base_model=request.base_model, data_source=request.data_source,
        params=request.stored_params(4), status=JobStatus.QUEUED, phase=None, step=None,
        max_steps=None, epoch=None, loss=None, eta_s=None, metrics={}, output_dir=None,
        plot_path=None, error=None, created_at="", started_at=None, finished_at=None,
    )  # fmt: skip
    spec = spec_for_job(
        job,
        run_dir=run_dir,
        output_dir=tmp_path / "models" / "9",
        torch_threads=2,
        device="cpu",
        progress_interval_s=0.5,
    )
    assert spec.train == DataSource(path=str(run_dir / "train.data"), display_name="moods.csv")
    assert spec.hyperparameters == request.hyperparameters
    assert (spec.epochs, spec.max_steps, spec.columns.label) == (1.0, 5, "label")
    assert (spec.torch_threads, spec.device, spec.progress_interval_s) == (2, "cpu", 0.5)
    assert spec.output_dir == str(tmp_path / "models" / "9")
