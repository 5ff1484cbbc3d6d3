"""`python -m bot infer`: run a model once from the shell, over the same registry the bot uses.

Examples::

    python -m bot infer sentiment --text "what a lovely day" --json
    python -m bot infer qa --question "Who?" --context-file notes.txt
    python -m bot infer generate --model ./models/smol --gguf-file smol.gguf --prompt "Hi"
    python -m bot infer ner --jsonl inputs.jsonl      # one JSON result per line, in order

With ``--jsonl`` every line is submitted at once, so the registry batches them.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from models.errors import InvalidInput, ModelError
from models.specs import GenerationParams, ModelSpec, Task

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

_TASKS: dict[str, Task] = {
    "generate": Task.GENERATION,
    "sentiment": Task.SENTIMENT,
    "ner": Task.NER,
    "qa": Task.QA,
}


class UsageError(Exception):
    """Bad command-line input; the message says what to change."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot infer",
        description="Run one model once (or over a JSONL file) with the bot's model registry.",
    )
    parser.add_argument("task", choices=sorted(_TASKS), help="what to run")
    parser.add_argument("--model", help="hub id or local folder (default: from settings)")
    parser.add_argument("--gguf-file", help="GGUF file inside the model folder or repository")
    parser.add_argument("--revision", help="hub branch, tag or commit")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: from settings)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    parser.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--jsonl", metavar="FILE", help="JSON object per line in ('-' = stdin)")
    parser.add_argument("--text", help="input text (sentiment, ner)")
    parser.add_argument("--prompt", help="prompt (generate)")
    parser.add_argument("--question", help="question (qa)")
    parser.add_argument("--context", help="context to answer from (qa)")
    parser.add_argument("--context-file", help="read the qa context from this UTF-8 file")
    parser.add_argument("--top-k", type=int, default=1, help="labels or answers to return")
    parser.add_argument(
        "--handle-impossible-answer", action="store_true", help="qa: allow the empty answer"
    )
    parser.add_argument("--max-new-tokens", type=int, help="generate: tokens to write")
    parser.add_argument("--temperature", type=float, default=0.8, help="generate: 0 = greedy")
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--repetition-penalty", type=float, default=1.1)
    parser.add_argument("--seed", type=int, help="generate: sampling seed")
    parser.add_argument("--system", help="generate: system prompt for chat models")
    parser.add_argument(
        "--no-chat-template",
        action="store_true",
        help="generate: send the prompt as is, even to a chat model",
    )
    return parser


def _settings_values(env_file: str) -> dict[str, Any]:
    """The model settings, from bot.settings (same env names and defaults as the bot)."""
    from bot.settings import Settings, SettingsError

    try:
        settings = Settings.load(env_file=env_file if Path(env_file).is_file() else None)
    except SettingsError as exc:
        raise UsageError("; ".join(exc.problems)) from None
    return {
        "generation": settings.generation_model,
        "generation_gguf_file": settings.generation_gguf_file,
        "sentiment": settings.sentiment_model,
        "ner": settings.ner_model,
        "qa": settings.qa_model,
        "device": settings.device,
        "max_new_tokens": settings.max_new_tokens,
        "torch_threads": settings.torch_threads,
        "allowed_roots": settings.allowed_model_roots,
    }


def build_spec(args: argparse.Namespace, values: dict[str, Any]) -> ModelSpec:
    """The spec for the requested task: settings, then command-line overrides."""
    from models.specs import default_specs

    task = _TASKS[args.task]
    spec = default_specs(
        generation=values["generation"],
        generation_gguf_file=values["generation_gguf_file"],
        sentiment=values["sentiment"],
        ner=values["ner"],
        qa=values["qa"],
        device=args.device or values["device"],
        max_new_tokens=values["max_new_tokens"],
    )[task]
    if args.model or args.gguf_file or args.revision:
        spec = spec.with_model(
            args.model or spec.model_id,
            revision=args.revision,
            gguf_file=args.gguf_file
            if args.gguf_file
            else (None if args.model else spec.gguf_file),
        )
    if task is Task.GENERATION and args.max_new_tokens:
        spec = dataclasses.replace(spec, max_new_tokens=max(1, args.max_new_tokens))
    return spec


def _read_jsonl(path: str) -> list[dict[str, Any]]:
    try:
        stream: TextIO = sys.stdin if path == "-" else open(path, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    records = []
    number = 0
    try:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}:{number}: not valid JSON ({exc})") from None
            if not isinstance(record, dict):
                raise UsageError(f"{path}:{number}: expected a JSON object")
            records.append(record)
    except UnicodeDecodeError:
        raise UsageError(f"{path}:{number + 1}: not UTF-8 text") from None
    finally:
        if stream is not sys.stdin:
            stream.close()
    return records


def _single_record(args: argparse.Namespace) -> dict[str, Any]:
    task = _TASKS[args.task]
    if task is Task.GENERATION:
        if args.prompt is None:
            raise UsageError("generate needs --prompt (or --jsonl)")
        return {"prompt": args.prompt}
    if task is Task.QA:
        context = args.context
        if args.context_file:
            try:
                context = Path(args.context_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageError(f"cannot read {args.context_file}: {exc}") from None
        if args.question is None or context is None:
            raise UsageError("qa needs --question and --context or --context-file (or --jsonl)")
        return {"question": args.question, "context": context}
    if args.text is None:
        raise UsageError(f"{args.task} needs --text (or --jsonl)")
    return {"text": args.text}


def _field(record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    if not isinstance(value, str):
        raise InvalidInput(f"This input has no string field {name!r}.")
    return value


def to_jsonable(result: Any) -> Any:
    """Results as plain JSON values (dataclasses become objects)."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    return result


async def _run_one(
    registry: Any, args: argparse.Namespace, record: dict[str, Any], *, stream_to: TextIO | None
) -> Any:
    task = _TASKS[args.task]
    if task is Task.SENTIMENT:
        return await registry.classify(_field(record, "text"), top_k=args.top_k)
    if task is Task.NER:
        return await registry.ner(_field(record, "text"))
    if task is Task.QA:
        return await registry.answer(
            _field(record, "question"),
            _field(record, "context"),
            top_k=args.top_k,
            handle_impossible_answer=args.handle_impossible_answer,
        )
    params = GenerationParams(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        system_prompt=args.system,
        use_chat_template=False if args.no_chat_template else None,
        seed=args.seed,
    )
    stream = registry.generate(_field(record, "prompt"), params)
    async for piece in stream:
        if stream_to is not None:
            stream_to.write(piece)
            stream_to.flush()
    return stream.stats


def _human(task: Task, result: Any) -> str:
    if task is Task.SENTIMENT:
        return "\n".join(f"{s.label}\t{s.score:.4f}" for s in result.scores)
    if task is Task.NER:
        if not result.entities:
            return "(no entities)"
        return "\n".join(
            f"{e.entity_group}\t{e.score:.4f}\t{e.start}-{e.end}\t{e.word}" for e in result.entities
        )
    if task is Task.QA:
        if not result.answers:
            return "(no answer)"
        return "\n".join(f"{a.score:.4f}\t{a.start}-{a.end}\t{a.text}" for a in result.answers)
    return (
        f"\n[{result.new_tokens} tokens, {result.seconds:.1f} s, {result.tokens_per_s:.1f} tok/s, "
        f"{result.finish_reason}]"
    )


async def run(args: argparse.Namespace, records: list[dict[str, Any]], *, single: bool) -> int:
    """Run every record concurrently and print results in input order."""
    from models.registry import ModelRegistry

    values = _settings_values(args.env_file)
    spec = build_spec(args, values)
    task = _TASKS[args.task]
    registry = ModelRegistry(
        [spec],
        allowed_roots=values["allowed_roots"],
        torch_threads=args.threads or values["torch_threads"],
    )
    stream_to = sys.stdout if single and task is Task.GENERATION and not args.json else None
    try:
        outcomes = await asyncio.gather(
            *(_run_one(registry, args, record, stream_to=stream_to) for record in records),
            return_exceptions=True,
        )
    finally:
        await registry.close()
    failed = False
    for outcome in outcomes:
        if isinstance(outcome, ModelError):
            failed = True
            if single and not args.json:
                print(str(outcome), file=sys.stderr)
            else:
                print(json.dumps({"error": str(outcome), "type": type(outcome).__name__}))
        elif isinstance(outcome, BaseException):
            raise outcome
        elif args.json or not single:
            print(json.dumps(to_jsonable(outcome), ensure_ascii=False))
        else:
            print(_human(task, outcome))
    return EXIT_FAILED if failed else EXIT_OK


def main(argv: Sequence[str]) -> int:
    """Entry point for ``python -m bot infer ...``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(list(argv))
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        import transformers

        transformers.logging.disable_progress_bar()
        transformers.logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - a dependency
        pass
    try:
        if args.top_k < 1:
            raise UsageError("--top-k must be at least 1")
        single = args.jsonl is None
        records = [_single_record(args)] if single else _read_jsonl(args.jsonl)
        return asyncio.run(run(args, records, single=single))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ModelError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_FAILED
