"""JobRequest: hub data names, validation in an isolated process, the stored params and the
worker spec."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bot.finetune.base_models import BaseModel
from bot.finetune.records import FineTuneJob
from bot.finetune.requests import (
    FineTuneError,
    HubData,
    JobRequest,
    Upload,
    check_parameters,
    spec_for_job,
    stage_inputs,
    summarize_staged,
)
from bot.isolation import IsolationLimits
from models.training.datasets import ColumnSpec, DataLimits, TrainTask
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


@pytest.mark.parametrize(
    ("value", "split", "refusal"),
    [
        ("/some/host/folder", None, "paths and links are not accepted"),
        ("./data", None, "paths and links are not accepted"),
        ("~/datasets/x", None, "paths and links are not accepted"),
        ("hf://datasets/owner/name", None, "paths and links are not accepted"),
        ("https://huggingface.co/datasets/imdb", None, "paths and links are not accepted"),
        ("file:/etc/passwd", None, "not a valid config name"),
        ("owner/name/extra", None, "not a Hugging Face hub dataset id"),
        ("..", None, "paths and links"),
        ("csv", None, "is a file format, not a hub dataset"),
        ("imdb:../../etc", None, "not a valid config name"),
        ("imdb", "train/../x", "not a valid split name"),
    ],
)
def test_hub_data_refuses_anything_but_a_hub_id(
    value: str, split: str | None, refusal: str
) -> None:
    """Item 1: a dataset named in Discord is a hub dataset id and nothing else."""
    with pytest.raises(FineTuneError, match=refusal):
        HubData.parse(value, split)


def test_stored_params_keep_their_shape() -> None:
    """The job row's params: the same JSON as before Hyperparameters existed, plus how Discord
    names the base model (the row's base_model is the resolved location)."""
    request = _request(validation=HubData("glue", "sst2", "validation"))
    assert request.data_source == "moods.csv"
    base = BaseModel("/data/models/12", "job #12", 12)
    assert request.stored_params(train_examples=4, base=base) == {
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
        "base_model": {"label": "job #12", "job": 12},
    }


def test_validation_summarises_the_staged_data_and_refuses_bad_parameters(
    tmp_path: Path,
) -> None:
    request = _request()
    stage_inputs(tmp_path / "job", request)
    limits = IsolationLimits(memory_mb=512, timeout_s=60)
    train, validation = summarize_staged(request, tmp_path / "job", DataLimits(), limits)
    assert train.num_examples == 4 and validation is None and train.source == "moods.csv"
    with pytest.raises(FineTuneError, match=r"moods\.csv line 4 goes past the limit of 2 "):
        summarize_staged(request, tmp_path / "job", DataLimits(max_rows=2), limits)
    check_parameters(request)
    with pytest.raises(FineTuneError, match="batch size must be between 1 and 1024"):
        check_parameters(_request(hyperparameters=Hyperparameters(batch_size=0)))


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
        params=request.stored_params(4, BaseModel(request.base_model, request.base_model)),
        status=JobStatus.QUEUED, phase=None, step=None,
        max_steps=None, epoch=None, loss=None, eta_s=None, metrics={}, output_dir=None,
        plot_path=None, error=None, created_at="", started_at=None, finished_at=None,
    )  # fmt: skip
    job = replace(
        job,
        base_model="/srv/models/bert",
        params={**job.params, "base_model": {"label": "bert", "job": None}},
    )
    spec = spec_for_job(
        job,
        run_dir=run_dir,
        output_dir=tmp_path / "models" / "9",
        torch_threads=2,
        device="cpu",
        progress_interval_s=0.5,
        limits=DataLimits(max_rows=100, max_bytes=5000),
        max_parameters=1000,
    )
    # What was checked is what is used: the stored location, and the limits again.
    assert (spec.base_model, spec.model_label) == ("/srv/models/bert", "bert")
    assert (spec.max_rows, spec.hub_max_bytes, spec.max_parameters) == (100, 5000, 1000)
    assert spec.train == DataSource(path=str(run_dir / "train.data"), display_name="moods.csv")
    assert spec.hyperparameters == request.hyperparameters
    assert (spec.epochs, spec.max_steps, spec.columns.label) == (1.0, 5, "label")
    assert (spec.torch_threads, spec.device, spec.progress_interval_s) == (2, "cpu", 0.5)
    assert spec.output_dir == str(tmp_path / "models" / "9")
