"""``python -m bot finetune``: the bot's fine-tuning runner, from the shell.

Validates the data first (a malformed file is refused with its line number before anything
starts), then runs the same training worker process the bot uses, printing progress lines
and, last, one JSON object with ``status``, ``metrics`` and ``output_dir`` when ``--json``.
Ctrl-C cancels gracefully (a second one kills the worker).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from bot.text import format_duration
from models.background import log_failures
from models.training.datasets import ColumnSpec, DatasetError, TrainTask, check_validation
from models.training.process import TrainingEvent, TrainingProcess, TrainingResult
from models.training.spec import DEFAULT_HYPERPARAMETERS as DEFAULTS
from models.training.spec import (
    DataSource,
    EventKind,
    Hyperparameters,
    JobSpec,
    JobSpecError,
    JobStatus,
)

logger = logging.getLogger(__name__)

EXIT_INVALID = 2  # bad options or data: nothing was started
CANCEL_GRACE_S = 30.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot finetune",
        description="Fine-tune a model with the bot's training runner.",
    )
    parser.add_argument(
        "--task", required=True, choices=[t.value for t in TrainTask], help="what to train"
    )
    parser.add_argument(
        "--base-model", required=True, help="hub model id or local folder to start from"
    )
    parser.add_argument(
        "--train",
        required=True,
        help="training data file (CSV/TSV/JSONL/CoNLL/SQuAD JSON/text), or hub:NAME[:CONFIG][@SPLIT]",
    )
    parser.add_argument(
        "--validation",
        help="validation data (same forms as --train); default: 10%% of the training data held out",
    )
    parser.add_argument(
        "--text-column", help="classification: the text column (detected if omitted)"
    )
    parser.add_argument("--text-pair-column", help="classification: the second sentence of a pair")
    parser.add_argument("--label-column", help="classification: the label column")
    parser.add_argument(
        "--label-names",
        help="classification: names for label values, e.g. 0=negative,1=positive",
    )
    parser.add_argument("--epochs", type=float, default=DEFAULTS.epochs)
    parser.add_argument("--learning-rate", type=float, default=DEFAULTS.learning_rate)
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    parser.add_argument(
        "--max-length",
        type=int,
        default=DEFAULTS.max_length,
        help="max tokens per example/block",
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=DEFAULTS.max_steps,
        help="stop after this many optimizer steps",
    )
    parser.add_argument("--output", required=True, help="folder to create for the trained model")
    parser.add_argument(
        "--json", action="store_true", help="end with one JSON line: status, metrics, output_dir"
    )
    return parser


def _spec_from_args(args: argparse.Namespace) -> JobSpec:
    validation = None
    if args.validation:
        validation = DataSource.parse(args.validation, default_split="validation")
    hyperparameters = Hyperparameters(
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        max_length=args.max_length,
        max_steps=args.max_steps,
    )
    return JobSpec.with_hyperparameters(
        hyperparameters,
        task=TrainTask(args.task),
        base_model=args.base_model,
        train=DataSource.parse(args.train),
        validation=validation,
        columns=ColumnSpec(
            args.text_column, args.text_pair_column, args.label_column, args.label_names
        ),
        output_dir=str(Path(args.output).resolve()),
    )


def _validate(spec: JobSpec) -> None:
    """Parse the data as the worker will, so errors show before any model loads."""
    spec.check()
    train = spec.train.load(spec.task, spec.columns)
    print(train.summary().describe(), flush=True)
    if spec.validation is not None:
        validation = spec.validation.load(spec.task, spec.columns)
        check_validation(train, validation)
        print(validation.summary().describe(), flush=True)


def _metrics_text(metrics: dict[str, Any]) -> str:
    return " ".join(
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
    )


def format_event(event: TrainingEvent) -> str | None:
    """One human-readable progress line for an event (None for events not worth a line)."""
    data = event.data
    if event.kind == EventKind.PHASE:
        return f"[{str(event.phase).replace('_', ' ')}]"
    if event.kind == EventKind.DATASET:
        return (
            f"train: {data.get('train_examples')} examples, "
            f"validation: {data.get('eval_examples')} ({data.get('eval_source')})"
        )
    if event.kind == EventKind.PROGRESS:
        loss = f" loss {event.loss:.4f}" if event.loss is not None else ""
        value = data.get("eval_value")
        metric = f" {data.get('eval_metric')} {value:.4f}" if value is not None else ""
        return (
            f"step {event.step}/{event.max_steps} (epoch {event.epoch or 0:.2f}){loss}{metric} "
            f"eta {format_duration(event.eta_s)}"
        )
    if event.kind == EventKind.EVAL:
        return f"eval at step {event.step}: {_metrics_text(dict(event.metrics))}"
    return None


async def _run(spec: JobSpec) -> TrainingResult:
    with tempfile.TemporaryDirectory(prefix="hfcord-finetune-") as run_dir:
        # The operator's own run: their hub token may reach their private models.
        job = await TrainingProcess.start(spec, run_dir=run_dir, hub_token=True)
        loop = asyncio.get_running_loop()
        interrupts = 0
        cancelling: set[asyncio.Task[TrainingResult]] = set()

        def on_interrupt() -> None:
            nonlocal interrupts
            interrupts += 1
            if interrupts == 1:
                print(
                    "cancelling: stopping after the current step (Ctrl-C again to kill)", flush=True
                )
                task = log_failures(asyncio.ensure_future(job.cancel(CANCEL_GRACE_S)))
                cancelling.add(task)
                task.add_done_callback(cancelling.discard)
            else:
                job.kill()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_interrupt)
        try:
            async for event in job:
                if event.kind == EventKind.FINAL:
                    break
                line = format_event(event)
                if line:
                    print(line, flush=True)
            result = await job.wait()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        if result.status == JobStatus.FAILED:
            logger.debug("worker log tail:\n%s", job.log_tail())
        return result


def _final_line(result: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(result, default=str)
    if result["status"] == JobStatus.COMPLETED:
        return f"done: {_metrics_text(result['metrics'])}\nsaved to {result['output_dir']}"
    if result["status"] == JobStatus.CANCELLED:
        return "cancelled; nothing was saved"
    return f"failed: {result.get('error')}"


def main(argv: list[str]) -> int:
    """Entry point for ``python -m bot finetune ...``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error, already printed
        return int(exc.code or 0)
    try:
        spec = _spec_from_args(args)
        _validate(spec)
    except (DatasetError, JobSpecError) as exc:
        failure: dict[str, Any] = {
            "status": str(JobStatus.FAILED),
            "metrics": {},
            "output_dir": None,
            "error": str(exc),
        }
        if args.json:
            print(json.dumps(failure), flush=True)
        else:
            print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_INVALID
    result = asyncio.run(_run(spec))
    print(_final_line(result.to_json_dict(), args.json), flush=True)
    return result.status.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
