"""The training process: ``python -m models.training.worker JOB_SPEC.json``.

Runs one :class:`~models.training.spec.JobSpec` with transformers ``Trainer`` and writes
progress as JSON lines on its stdout (everything else printed goes to stderr), ending with
one ``final`` event. It runs in its own process so that a crash or running out of memory
never takes the bot down. SIGTERM or the spec's cancel file stop it between steps; a
cancelled or failed run leaves nothing at the output path, a completed one appears there
in one rename. What differs between tasks (model class, features, collator, metrics) comes
from the task's entry in :mod:`models.training.tasks`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from models.training.curves import plot_curves
from models.training.datasets import (
    ColumnSpec,
    DatasetError,
    ParsedDataset,
    check_validation,
    sample_examples,
    split_holdout,
)
from models.training.sandbox import bind_to_parent
from models.training.sizes import format_parameters
from models.training.spec import EventKind, JobSpec, JobSpecError, JobStatus
from models.training.tasks import EvalSet, TaskSpec, task_spec

logger = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]

CURVES_FILE = "training_curves.png"
METRICS_FILE = "training_metrics.json"


class JobCancelled(Exception):
    """Raised inside the worker when a cancel was requested."""


class StopFlag:
    """Set by SIGTERM or by the cancel file appearing; polled between training steps."""

    def __init__(self, cancel_file: str | None = None) -> None:
        self._set = False
        self._cancel_file = cancel_file

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        if not self._set and self._cancel_file and os.path.exists(self._cancel_file):
            self._set = True
        return self._set

    def check(self) -> None:
        if self.is_set():
            raise JobCancelled


# --------------------------------------------------------------------------- data


def load_data(spec: JobSpec, emit: Emit) -> tuple[ParsedDataset, ParsedDataset]:
    """Train and validation data (held out from train when no validation source is given)."""
    columns = spec.columns or ColumnSpec()
    train = spec.train.load(spec.task, columns, spec.data_limits)
    if spec.validation is not None:
        validation = spec.validation.load(spec.task, columns, spec.data_limits)
    else:
        train, validation = split_holdout(train, 0.1, seed=spec.seed)
    check_validation(train, validation)
    if spec.max_train_examples:
        train = sample_examples(train, spec.max_train_examples, seed=spec.seed)
    if spec.max_eval_examples:
        validation = sample_examples(validation, spec.max_eval_examples, seed=spec.seed)
    emit(
        {
            "event": EventKind.DATASET,
            "train_examples": len(train),
            "eval_examples": len(validation),
            "labels": list(train.labels),
            "train_source": train.source,
            "eval_source": validation.source,
        }
    )
    return train, validation


# --------------------------------------------------------------------------- trainer glue


def _make_callback(
    spec: JobSpec, entry: TaskSpec, emit: Emit, stop: StopFlag, history: list
) -> Any:
    from transformers import TrainerCallback

    primary = entry.primary_metric

    class ProgressCallback(TrainerCallback):  # type: ignore[misc]
        """Progress events (throttled), loss/metric history, and the graceful stop."""

        def __init__(self) -> None:
            self.started = 0.0
            self.last_emit = 0.0
            self.last_loss: float | None = None
            self.last_eval: dict[str, Any] | None = None
            self.last_eval_step = -1

        def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            self.started = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            if stop.is_set():
                control.should_training_stop = True
                return control
            now = time.monotonic()
            final = state.global_step >= state.max_steps
            if state.global_step == 1 or final or now - self.last_emit >= spec.progress_interval_s:
                self.last_emit = now
                elapsed = now - self.started
                rate = elapsed / max(1, state.global_step)
                emit(
                    {
                        "event": EventKind.PROGRESS,
                        "phase": "training",
                        "step": state.global_step,
                        "max_steps": state.max_steps,
                        "epoch": round(float(state.epoch or 0.0), 4),
                        "loss": self.last_loss,
                        "eval_metric": primary,
                        "eval_value": (self.last_eval or {}).get(f"eval_{primary}"),
                        "elapsed_s": round(elapsed, 1),
                        "eta_s": round(rate * (state.max_steps - state.global_step), 1),
                    }
                )
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
            if logs and "loss" in logs:
                self.last_loss = float(logs["loss"])
                history.append(
                    {"step": state.global_step, "epoch": state.epoch, "loss": self.last_loss}
                )

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # type: ignore[no-untyped-def]
            if not metrics:
                return
            metrics = dict(metrics)
            if entry.derive_metrics is not None:
                entry.derive_metrics(metrics)
            self.last_eval = metrics
            self.last_eval_step = state.global_step
            clean = _clean_metrics(metrics)
            history.append({"step": state.global_step, "epoch": state.epoch, "eval": clean})
            emit(
                {
                    "event": EventKind.EVAL,
                    "step": state.global_step,
                    "epoch": round(float(state.epoch or 0.0), 4),
                    "metrics": clean,
                }
            )

        def on_prediction_step(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            # Evaluation has no should_stop flag; a cancel during it ends the run here.
            stop.check()

    return ProgressCallback()


_DROP = ("epoch", "runtime", "samples_per_second", "steps_per_second", "model_preparation_time")


def _clean_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = key.removeprefix("eval_")
        if name in _DROP or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        value = float(value)
        out[name] = round(value, 6) if math.isfinite(value) else value
    return out


def _effective_max_length(spec: JobSpec, config: Any) -> int:
    """The spec's max length, capped at what the model's position embeddings allow."""
    limit = spec.max_length
    for attr in ("max_position_embeddings", "n_positions"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            limit = min(limit, value)
    return limit


def _check_parameters(spec: JobSpec, entry: TaskSpec) -> None:
    """Refuse a base model over ``spec.max_parameters``, counted from its config alone (the
    model is built on torch's meta device: no weights are read or downloaded)."""
    if spec.max_parameters is None:
        return
    import torch
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(spec.base_model)
        with torch.device("meta"):
            model = entry.auto_model().from_config(config)
    except Exception as exc:
        logger.exception("the configuration of %s did not load", spec.base_model)
        raise JobSpecError(
            f"Couldn't load {spec.model_label} as a {spec.task} model: check that it is a "
            "transformers model of a supported kind."
        ) from exc
    count = sum(parameter.numel() for parameter in model.parameters())
    if count > spec.max_parameters:
        raise JobSpecError(
            f"{spec.model_label} has {format_parameters(count)} parameters; this bot fine-tunes "
            f"models of up to {format_parameters(spec.max_parameters)}."
        )


def _load_model(spec: JobSpec, entry: TaskSpec, labels: tuple[str, ...]) -> tuple[Any, Any]:
    """The tokenizer and the model (with a head sized by ``labels`` where the task has one).

    Failures are sentences naming the model by its label; the details (which may hold paths)
    go to the worker's log only.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.base_model)
    except Exception as exc:
        logger.exception("the tokenizer of %s did not load", spec.base_model)
        raise JobSpecError(f"Couldn't load the tokenizer of {spec.model_label}.") from exc
    head: dict[str, Any] = {}
    if entry.head_from_labels:
        head = {
            "num_labels": len(labels),
            "id2label": dict(enumerate(labels)),
            "label2id": {label: i for i, label in enumerate(labels)},
            "ignore_mismatched_sizes": True,
        }
    try:
        model = entry.auto_model().from_pretrained(spec.base_model, **head)
    except Exception as exc:
        logger.exception("the model %s did not load for %s", spec.base_model, spec.task)
        raise JobSpecError(f"Couldn't load {spec.model_label} for {spec.task}.") from exc
    if entry.needs_fast_tokenizer and not getattr(tokenizer, "is_fast", False):
        raise JobSpecError(
            f"{spec.model_label} has no fast tokenizer, which {spec.task} training needs."
        )
    if tokenizer.pad_token is None:
        # GPT-style tokenizers have no pad token; batching (and pipelines later) need one.
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.eos_token_id
    return tokenizer, model


def run_job(spec: JobSpec, emit: Emit, stop: StopFlag | None = None) -> dict[str, Any]:
    """Train, evaluate and save; returns the final event. Raises JobCancelled or an error."""
    stop = stop or StopFlag(spec.cancel_file)
    started = time.monotonic()
    spec.check()
    stop.check()
    output_dir = Path(spec.output_dir).resolve()

    emit({"event": EventKind.PHASE, "phase": "loading_data"})
    train, validation = load_data(spec, emit)
    stop.check()

    emit({"event": EventKind.PHASE, "phase": "loading_model"})
    import torch

    if spec.torch_threads:
        torch.set_num_threads(spec.torch_threads)
    from transformers import set_seed

    set_seed(spec.seed)  # before loading: a new head's initial weights come from the seed too
    entry = task_spec(spec.task)
    _check_parameters(spec, entry)
    tokenizer, model = _load_model(spec, entry, train.labels)
    id2label = dict(enumerate(train.labels))
    label2id = {label: i for i, label in id2label.items()}
    max_length = _effective_max_length(spec, model.config)
    stop.check()

    emit({"event": EventKind.PHASE, "phase": "tokenizing"})
    from transformers import PrinterCallback, Trainer, TrainingArguments

    train_f = entry.encode(train.examples, tokenizer, label2id, max_length).features
    eval_encoded = entry.encode(validation.examples, tokenizer, label2id, max_length)
    eval_f = eval_encoded.features
    if not train_f or not eval_f:
        raise DatasetError("After tokenization there is nothing left to train or evaluate on.")
    compute_metrics = None
    if entry.metrics is not None:
        compute_metrics = partial(
            entry.metrics, EvalSet(validation.examples, eval_encoded, id2label)
        )
    stop.check()

    steps_per_epoch = math.ceil(len(train_f) / spec.batch_size)
    total_steps = spec.max_steps or math.ceil(steps_per_epoch * spec.epochs)
    evals = max(1, round(min(spec.epochs, total_steps / steps_per_epoch) * spec.evals_per_epoch))
    eval_steps = max(1, math.ceil(total_steps / evals))
    use_cpu = spec.device == "cpu" or not torch.cuda.is_available()
    scratch = tempfile.mkdtemp(prefix="hfcord-trainer-", dir=spec.scratch_dir)
    history: list[dict[str, Any]] = []
    primary = entry.primary_metric
    callback = _make_callback(spec, entry, emit, stop, history)
    try:
        args = TrainingArguments(
            output_dir=scratch,
            num_train_epochs=spec.epochs,
            max_steps=spec.max_steps or -1,
            learning_rate=spec.learning_rate,
            per_device_train_batch_size=spec.batch_size,
            per_device_eval_batch_size=max(spec.batch_size, 32),
            warmup_steps=int(total_steps * spec.warmup_fraction),
            weight_decay=spec.weight_decay,
            eval_strategy="steps",
            eval_steps=eval_steps,
            save_strategy="no",
            logging_strategy="steps",
            logging_steps=max(1, total_steps // 50),
            report_to="none",
            disable_tqdm=True,
            seed=spec.seed,
            use_cpu=use_cpu,
            dataloader_num_workers=0,
            remove_unused_columns=False,
            label_names=list(entry.label_names) if entry.label_names else None,
        )
        trainer = Trainer(
            model=model,
            args=args,
            data_collator=entry.collator(tokenizer),
            train_dataset=train_f,
            eval_dataset=eval_f,
            processing_class=tokenizer,
            compute_metrics=compute_metrics,
            callbacks=[callback],
        )
        trainer.remove_callback(PrinterCallback)  # our events replace its printed log dicts
        emit(
            {
                "event": EventKind.PHASE,
                "phase": "training",
                "max_steps": total_steps,
                "train_features": len(train_f),
                "eval_features": len(eval_f),
            }
        )
        train_out = trainer.train()
        stop.check()
        if callback.last_eval_step != trainer.state.global_step:
            emit({"event": EventKind.PHASE, "phase": "evaluating"})
            trainer.evaluate()
        stop.check()
        final_metrics = _clean_metrics(callback.last_eval or {})
        final_metrics["train_loss"] = round(float(train_out.training_loss), 6)
        final_metrics["train_examples"] = float(len(train))
        final_metrics["eval_examples"] = float(len(validation))
        final_metrics["steps"] = float(trainer.state.global_step)
        final_metrics["epochs"] = round(float(trainer.state.epoch or 0.0), 4)
        final_metrics["train_seconds"] = round(time.monotonic() - started, 1)

        emit({"event": EventKind.PHASE, "phase": "saving"})
        final_dir = _save_atomically(
            output_dir,
            lambda tmp: _write_outputs(
                tmp, trainer, tokenizer, spec, final_metrics, history, primary
            ),
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "event": EventKind.FINAL,
        "status": JobStatus.COMPLETED,
        "metrics": final_metrics,
        "primary_metric": primary,
        "output_dir": str(final_dir),
        "plot": str(final_dir / CURVES_FILE),
        "wall_s": round(time.monotonic() - started, 1),
    }


def _write_outputs(
    folder: Path,
    trainer: Any,
    tokenizer: Any,
    spec: JobSpec,
    metrics: dict[str, float],
    history: list[dict[str, Any]],
    primary: str,
) -> None:
    trainer.model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    record = {
        "task": spec.task.value,
        "base_model": spec.base_model,
        "metrics": metrics,
        "primary_metric": primary,
        "history": history,
        "spec": json.loads(spec.to_json()),
    }
    (folder / METRICS_FILE).write_text(json.dumps(record, indent=2, default=str))
    plot_curves(
        history,
        primary,
        folder / CURVES_FILE,
        title=f"{spec.task.value}: {_short_ref(spec.model_label)}",
    )


def _save_atomically(output_dir: Path, write: Callable[[Path], None]) -> Path:
    """Write into a hidden sibling folder, then rename it to ``output_dir`` in one step."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_dir.parent / f".{output_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        if output_dir.exists() and output_dir.is_dir() and not any(output_dir.iterdir()):
            output_dir.rmdir()  # an empty placeholder folder may be replaced
        os.rename(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output_dir


def _short_ref(ref: str) -> str:
    """A hub id or label as is; a local path by its folder's name (the picture is posted in
    Discord: no host path)."""
    path = Path(ref)
    return path.name if path.is_absolute() else ref


# --------------------------------------------------------------------------- process entry


class _EventWriter:
    """Writes events as JSON lines to a stream (and optionally appends them to a file)."""

    def __init__(self, stream: TextIO, progress_file: str | None) -> None:
        self._stream = stream
        self._file = open(progress_file, "a", encoding="utf-8") if progress_file else None

    def __call__(self, event: dict[str, Any]) -> None:
        event.setdefault("time", round(time.time(), 3))
        line = json.dumps(event, default=str)
        for out in (self._stream, self._file):
            if out is not None:
                out.write(line + "\n")
                out.flush()


def _event_stream() -> TextIO:
    """A private copy of stdout for events; fd 1 then points at stderr so that anything a
    library prints cannot corrupt the event stream."""
    fd = os.dup(sys.stdout.fileno())
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return os.fdopen(fd, "w", buffering=1, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run the job in ``argv[0]`` (a JSON spec file); exit code from its JobStatus."""
    argv = sys.argv[1:] if argv is None else argv
    bind_to_parent()  # a worker never outlives the bot (or CLI) that started it
    stream = _event_stream()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    if len(argv) != 1:
        print("usage: python -m models.training.worker JOB_SPEC.json", file=sys.stderr)
        return 2
    try:
        spec = JobSpec.from_json(Path(argv[0]).read_text(encoding="utf-8"))
    except (OSError, JobSpecError, DatasetError) as exc:
        logger.error("could not read the job specification: %s", exc)
        _EventWriter(stream, None)(
            {
                "event": EventKind.FINAL,
                "status": JobStatus.FAILED,
                "error": "The training process could not read its job specification.",
                "metrics": {},
                "output_dir": None,
            }
        )
        return JobStatus.FAILED.exit_code
    emit = _EventWriter(stream, spec.progress_file)
    stop = StopFlag(spec.cancel_file)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return run_and_report(spec, emit, stop)


OUT_OF_MEMORY = "Training ran out of memory; try a smaller batch size or max length."


def failure_sentence(exc: BaseException) -> str:
    """What users read when training fails unexpectedly: no exception text (it may hold paths
    of this machine), only its kind; the traceback is in the worker log and the bot's log."""
    if "OutOfMemory" in type(exc).__name__:  # torch.cuda.OutOfMemoryError and the like
        return OUT_OF_MEMORY
    return (
        f"Training stopped on an unexpected error ({type(exc).__name__}); the bot's operator "
        "can find the details in the bot's log."
    )


def run_and_report(spec: JobSpec, emit: Emit, stop: StopFlag) -> int:
    """run_job with every outcome turned into one final event and an exit code."""
    started = time.monotonic()

    def final(status: JobStatus, error: str | None = None) -> None:
        emit(
            {
                "event": EventKind.FINAL,
                "status": status,
                "metrics": {},
                "output_dir": None,
                "error": error,
                "wall_s": round(time.monotonic() - started, 1),
            }
        )

    try:
        result = run_job(spec, emit, stop)
    except JobCancelled:
        logger.info("job cancelled; nothing saved")
        final(JobStatus.CANCELLED)
        return JobStatus.CANCELLED.exit_code
    except (DatasetError, JobSpecError) as exc:
        final(JobStatus.FAILED, str(exc))
        return JobStatus.FAILED.exit_code
    except MemoryError:
        traceback.print_exc()
        final(JobStatus.FAILED, OUT_OF_MEMORY)
        return JobStatus.FAILED.exit_code
    except Exception as exc:
        traceback.print_exc()  # the details, for the operator: the worker log and the bot log
        if stop.is_set():  # an error caused by the interruption itself
            final(JobStatus.CANCELLED)
            return JobStatus.CANCELLED.exit_code
        final(JobStatus.FAILED, failure_sentence(exc))
        return JobStatus.FAILED.exit_code
    emit(result)
    return JobStatus.COMPLETED.exit_code


if __name__ == "__main__":
    sys.exit(main())
