"""The training worker in-process on tiny random models: every task, events, cancel, atomic save."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from models.training import worker
from models.training.datasets import TrainTask
from models.training.spec import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    DataSource,
    JobSpec,
    JobSpecError,
)
from models.training.worker import JobCancelled, StopFlag, run_and_report, run_job

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_sst_sample(shared_data: Path, path: Path, n: int) -> Path:
    lines = (shared_data / "sst2" / "train.tsv").read_bytes().split(b"\r\n")
    path.write_bytes(b"\r\n".join(lines[: n + 1]) + b"\r\n")
    return path


def _write_conll_sample(shared_data: Path, path: Path, sentences: int) -> Path:
    text = (shared_data / "conll2003" / "train.txt").read_text(encoding="utf-8")
    path.write_text("\n\n".join(text.split("\n\n")[: sentences + 1]) + "\n", encoding="utf-8")
    return path


def _spec(task: str, base: Path, train: Path, out: Path, **kw: Any) -> JobSpec:
    defaults: dict[str, Any] = {
        "epochs": 1,
        "batch_size": 16,
        "max_length": 32,
        "progress_interval_s": 0.0,
    }
    defaults.update(kw)
    return JobSpec(
        task=TrainTask(task),
        base_model=str(base),
        train=DataSource(path=str(train)),
        output_dir=str(out),
        **defaults,
    )


class Events(list[dict[str, Any]]):
    def __call__(self, event: dict[str, Any]) -> None:
        self.append(event)

    def kinds(self) -> list[str]:
        return [e["event"] for e in self]


def _assert_saved(result: dict[str, Any], out: Path) -> dict[str, Any]:
    assert result["status"] == "completed"
    assert Path(result["output_dir"]) == out.resolve()
    assert (out / "model.safetensors").is_file()
    assert (out / "tokenizer.json").is_file()
    assert (out / "training_curves.png").read_bytes().startswith(PNG_MAGIC)
    record = json.loads((out / "training_metrics.json").read_text())
    assert record["metrics"] == result["metrics"]
    # nothing left beside the output folder
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []
    return record


def test_text_classification_single_sentences(
    tiny_sentiment_dir: Path, shared_data: Path, tmp_path: Path
) -> None:
    train = _write_sst_sample(shared_data, tmp_path / "sst.tsv", 200)
    out = tmp_path / "out" / "model"
    events = Events()
    result = run_job(_spec("text-classification", tiny_sentiment_dir, train, out), events)
    _assert_saved(result, out)
    assert {"accuracy", "f1", "loss", "train_loss"} <= set(result["metrics"])
    assert result["metrics"]["eval_examples"] == 20  # 10% held out
    kinds = events.kinds()
    assert kinds[0] == "phase" and "dataset" in kinds and "eval" in kinds
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[-1]["step"] == progress[-1]["max_steps"] == 12
    assert all({"epoch", "loss", "eta_s", "phase"} <= set(e) for e in progress)
    assert progress[-1]["eval_metric"] == "accuracy"

    from transformers import AutoModelForSequenceClassification, pipeline

    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "0", 1: "1"}
    prediction = pipeline("text-classification", model=str(out))("a fine film")
    assert prediction[0]["label"] in {"0", "1"}


def test_text_classification_pairs_with_validation_file(
    tiny_sentiment_dir: Path, shared_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "mrpc"
    spec = _spec(
        "text-classification",
        tiny_sentiment_dir,
        shared_data / "mrpc" / "train.tsv",
        out,
        validation=DataSource(path=str(shared_data / "mrpc" / "dev.tsv")),
        max_train_examples=64,
        max_eval_examples=32,
        max_length=48,
    )
    events = Events()
    result = run_job(spec, events)
    _assert_saved(result, out)
    dataset = next(e for e in events if e["event"] == "dataset")
    assert (dataset["train_examples"], dataset["eval_examples"]) == (64, 32)
    assert 0.0 <= result["metrics"]["accuracy"] <= 1.0


def test_token_classification_aligns_labels(
    tiny_ner_dir: Path, shared_data: Path, tmp_path: Path
) -> None:
    train = _write_conll_sample(shared_data, tmp_path / "ner.txt", 60)
    out = tmp_path / "ner"
    result = run_job(_spec("token-classification", tiny_ner_dir, train, out), Events())
    _assert_saved(result, out)
    assert {"f1", "precision", "recall", "accuracy"} <= set(result["metrics"])

    from transformers import AutoModelForTokenClassification, pipeline

    model = AutoModelForTokenClassification.from_pretrained(out)
    assert model.config.id2label[0] == "O"
    assert set(model.config.label2id) >= {"B-ORG", "B-PER"}
    entities = pipeline("token-classification", model=str(out))("EU rejects German call")
    assert isinstance(entities, list)


def test_question_answering(tiny_qa_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "qa"
    spec = _spec(
        "question-answering",
        tiny_qa_dir,
        shared_data / "squad" / "dev-v1.1-part-a.json",
        out,
        max_length=96,
        max_train_examples=48,
        max_eval_examples=16,
    )
    result = run_job(spec, Events())
    _assert_saved(result, out)
    assert {"exact_match", "f1"} <= set(result["metrics"])

    from transformers import AutoModelForQuestionAnswering

    AutoModelForQuestionAnswering.from_pretrained(out)


def test_causal_lm_reports_perplexity(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    text = "\n\n".join(
        f"Paragraph {i}: the quick brown fox jumps over the lazy dog." for i in range(40)
    )
    train = tmp_path / "corpus.txt"
    train.write_text(text)
    out = tmp_path / "clm"
    result = run_job(_spec("causal-lm", tiny_gpt2_dir, train, out, batch_size=4), Events())
    _assert_saved(result, out)
    assert result["metrics"]["perplexity"] > 1.0

    from transformers import pipeline

    generated = pipeline("text-generation", model=str(out))("The quick", max_new_tokens=3)
    assert generated[0]["generated_text"].startswith("The quick")


def test_cancel_stops_training_and_saves_nothing(
    tiny_sentiment_dir: Path, shared_data: Path, tmp_path: Path
) -> None:
    train = _write_sst_sample(shared_data, tmp_path / "sst.tsv", 200)
    out = tmp_path / "cancelled"
    stop = StopFlag()
    events = Events()

    def emit(event: dict[str, Any]) -> None:
        events(event)
        if event["event"] == "progress" and event["step"] == 3:
            stop.set()

    spec = _spec("text-classification", tiny_sentiment_dir, train, out, epochs=5)
    with pytest.raises(JobCancelled):
        run_job(spec, emit, stop)
    assert max(e["step"] for e in events if e["event"] == "progress") == 3
    assert not out.exists()
    assert list(tmp_path.glob(".cancelled*")) == []


def test_cancel_file_is_honoured(
    tiny_sentiment_dir: Path, shared_data: Path, tmp_path: Path
) -> None:
    train = _write_sst_sample(shared_data, tmp_path / "sst.tsv", 100)
    flag = tmp_path / "cancel"
    flag.touch()
    spec = _spec(
        "text-classification", tiny_sentiment_dir, train, tmp_path / "o", cancel_file=str(flag)
    )
    events = Events()
    assert run_and_report(spec, events, StopFlag(str(flag))) == EXIT_CANCELLED
    assert events[-1]["event"] == "final" and events[-1]["status"] == "cancelled"
    assert not (tmp_path / "o").exists()


def test_malformed_data_is_a_failed_final_event(tiny_sentiment_dir: Path, tmp_path: Path) -> None:
    train = tmp_path / "bad.tsv"
    train.write_text("label\tsentence\n1\tgood\n0\n")
    events = Events()
    code = run_and_report(
        _spec("text-classification", tiny_sentiment_dir, train, tmp_path / "o"), events, StopFlag()
    )
    assert code == EXIT_FAILED
    final = events[-1]
    assert final["status"] == "failed" and final["output_dir"] is None
    assert "bad.tsv line 3 has 1 tab-separated fields" in final["error"]


def test_save_failure_leaves_no_output(
    tiny_sentiment_dir: Path, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = _write_sst_sample(shared_data, tmp_path / "sst.tsv", 60)
    out = tmp_path / "models" / "job-1"
    real_write = worker._write_outputs

    def write_then_fail(folder: Path, *args: Any) -> None:
        real_write(folder, *args)
        assert (folder / "model.safetensors").exists()
        raise OSError("disk full")

    monkeypatch.setattr(worker, "_write_outputs", write_then_fail)
    events = Events()
    code = run_and_report(
        _spec("text-classification", tiny_sentiment_dir, train, out), events, StopFlag()
    )
    assert code == EXIT_FAILED
    # A sentence, not the exception's text (it may name files of this machine: issue 10).
    assert events[-1]["error"].startswith("Training stopped on an unexpected error (OSError)")
    assert "disk full" not in events[-1]["error"]
    assert list((tmp_path / "models").iterdir()) == []  # neither job-1 nor a partial folder


def test_existing_output_is_refused_before_training(
    tiny_sentiment_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    spec = _spec("text-classification", tiny_sentiment_dir, tmp_path / "any.tsv", out)
    with pytest.raises(JobSpecError, match="already exists"):
        run_job(spec, Events())
    assert (out / "keep.txt").read_text() == "x"


def test_spec_json_round_trip_and_checks(tmp_path: Path) -> None:
    spec = JobSpec(
        task=TrainTask.TOKEN_CLASSIFICATION,
        base_model="bert-base-cased",
        train=DataSource.parse("hub:conll2003:conll2003@train"),
        validation=DataSource(path="/x/valid.txt"),
        output_dir=str(tmp_path / "o"),
        max_steps=10,
    )
    again = JobSpec.from_json(spec.to_json())
    assert again == spec
    assert again.train.hub_name == "conll2003" and again.train.hub_split == "train"
    for bad, message in [
        ({"epochs": 0}, "Epochs"),
        ({"learning_rate": 2.0}, "learning rate"),
        ({"batch_size": 0}, "batch size"),
        ({"max_length": 4}, "max length"),
        ({"max_steps": 0}, "Max steps"),
    ]:
        with pytest.raises(JobSpecError, match=message):
            JobSpec.from_dict({**json.loads(spec.to_json()), **bad}).check()


def _small_csv(path: Path) -> Path:
    path.write_text("text,label\n" + "".join(f"good {i},pos\nbad {i},neg\n" for i in range(8)))
    return path


def test_a_base_model_over_the_parameter_limit_fails_before_its_weights_load(
    tiny_sentiment_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10, item 4: counted from the config on torch's meta device."""
    from transformers import AutoModelForSequenceClassification

    def no_weights(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("weights loaded before the size check")

    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", no_weights)
    train = _small_csv(tmp_path / "moods.csv")
    spec = _spec(
        "text-classification",
        tiny_sentiment_dir,
        train,
        tmp_path / "out",
        max_parameters=1000,
        base_model_label="tiny-sentiment",
    )
    events = Events()
    assert run_and_report(spec, events, StopFlag()) == EXIT_FAILED
    error = events[-1]["error"]
    assert error.startswith("tiny-sentiment has ") and error.endswith("models of up to 1K.")
    assert str(tmp_path) not in error and str(tiny_sentiment_dir) not in error


def test_a_model_that_does_not_load_is_named_by_its_label_never_its_path(
    tmp_path: Path,
) -> None:
    train = _small_csv(tmp_path / "moods.csv")
    folder = tmp_path / "srv" / "not-a-model"
    folder.mkdir(parents=True)
    for limit, expected in (
        (10**9, "Couldn't load not-a-model as a text-classification model"),
        (None, "Couldn't load the tokenizer of not-a-model."),
    ):
        spec = _spec(
            "text-classification",
            folder,
            train,
            tmp_path / "out",
            max_parameters=limit,
            base_model_label="not-a-model",
        )
        events = Events()
        assert run_and_report(spec, events, StopFlag()) == EXIT_FAILED
        assert events[-1]["error"].startswith(expected) and "/srv" not in events[-1]["error"]
