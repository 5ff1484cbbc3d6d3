"""`python -m bot infer`: run a model from the shell, over the same registry the bot uses.

Examples::

    python -m bot infer sentiment --text "what a lovely day" --json
    python -m bot infer qa --question "Who?" --context-file notes.txt
    python -m bot infer generate --model ./models/smol --gguf-file smol.gguf --prompt "Hi"
    python -m bot infer ner --jsonl inputs.jsonl      # one JSON result per line, in order
    python -m bot infer ask --documents ./handbook --question "How many days off?" --json

``ask`` indexes every document under ``--documents`` (.txt, .md, .pdf, .html) in a temporary
database and answers as ``/ask`` does (the whole text when it is short, else the ``--top-k``
best passages, then the reader): each result has ``answers`` (``text``, ``score``, ``document``,
``start``, ``end``; best first, one per passage read) and ``passages`` (``document``, ``start``,
``end``, ``score``; in retrieval order, ``score`` null for a document read whole).

With ``--jsonl FILE`` (``-`` for stdin) each line is a JSON object: ``{"text": ...}`` for sentiment
and ner, ``{"question": ..., "context": ...}`` for qa, ``{"prompt": ...}`` or ``{"messages":
[{"role": ..., "content": ...}, ...]}`` for generate, ``{"question": ...}`` for ask. The file is read as it is answered, with at
most as many lines in flight as the model's queue takes (its ``queue_depth``), so the registry
batches them, never answers "busy", and a file of any length runs in bounded memory. One JSON
line comes out per input line (blank lines are skipped), in input order, each as soon as it and
every line before it are answered; a line that cannot be answered (a missing field, empty text)
gets ``{"error": ..., "type": ...}`` instead, and the others are still answered.

Exit status: 0 when every input was answered; 1 when an input failed (its error is printed in
its place) or the model cannot serve at all (said once on stderr; the run stops); 2 for a usage
error: bad arguments, an unreadable file, or a line that is not a JSON object (named as FILE:LINE
once the lines before it are answered).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import logging
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from models.errors import InvalidInput, ModelError, QueueFull
from models.requests import (
    ChatMessage,
    ClassifyRequest,
    EncoderRequest,
    GenerationParams,
    GenerationRequest,
    NERRequest,
    QARequest,
)
from models.specs import ModelSpec
from models.tasks import Task

if TYPE_CHECKING:
    from bot.settings import Settings
    from models.registry import ModelRegistry

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

# The command line's task names: the one place they map to tasks.
CLI_TASKS: dict[str, Task] = {
    "generate": Task.GENERATION,
    "sentiment": Task.SENTIMENT,
    "ner": Task.NER,
    "qa": Task.QA,
}
# Questions over a folder of documents: retrieval (embeddings) then the reader (qa).
ASK = "ask"

Record = dict[str, Any]
Answer = Callable[[Record], Awaitable[Any]]


class UsageError(Exception):
    """Bad command-line input; the message says what to change."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot infer",
        description="Run one model once (or over a JSONL file) with the bot's model registry.",
    )
    parser.add_argument("task", choices=sorted([*CLI_TASKS, ASK]), help="what to run")
    parser.add_argument(
        "--model", help="hub id or local folder (default: from settings; ask: the qa model)"
    )
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
    parser.add_argument(
        "--top-k",
        type=int,
        help="labels or answers to return (default 1); ask: passages to read "
        "(default: HFCORD_ASK_PASSAGES)",
    )
    parser.add_argument("--documents", metavar="DIR", help="ask: the folder of documents")
    parser.add_argument("--embedding-model", help="ask: embedding model (default: from settings)")
    parser.add_argument(
        "--handle-impossible-answer", action="store_true", help="qa: allow the empty answer"
    )
    parser.add_argument("--max-new-tokens", type=int, help="generate: tokens to write")
    parser.add_argument("--temperature", type=float, default=0.8, help="generate: 0 = greedy")
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--repetition-penalty", type=float, default=1.1)
    parser.add_argument("--seed", type=int, help="generate: sampling seed")
    parser.add_argument(
        "--system", help="generate: system prompt for chat models (before each prompt)"
    )
    parser.add_argument(
        "--no-chat-template",
        action="store_true",
        help="generate: send the prompt as is, even to a chat model",
    )
    return parser


def load_settings(env_file: str) -> Settings:
    """The bot's settings (same env names and defaults as the bot)."""
    from bot.settings import Settings, SettingsError

    try:
        return Settings.load(env_file=env_file if Path(env_file).is_file() else None)
    except SettingsError as exc:
        raise UsageError("; ".join(exc.problems)) from None


def build_spec(args: argparse.Namespace, settings: Settings, task: Task | None = None) -> ModelSpec:
    """The spec for the requested task (or ``task``): settings, then command-line overrides."""
    task = task or CLI_TASKS[args.task]
    spec = settings.model_specs()[task]
    if args.device:
        spec = dataclasses.replace(spec, device=args.device)
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


# ----------------------------------------------------------------- input


@dataclasses.dataclass(frozen=True)
class BadLine:
    """A line that is not a JSON object: the run stops there (a usage error)."""

    number: int
    problem: str


def read_jsonl(stream: TextIO, name: str) -> Iterator[Record | BadLine]:
    """The JSON objects of ``stream``, one per non-blank line, read as they are asked for; a
    line that is not a JSON object (or not UTF-8) ends the stream with a :class:`BadLine`."""
    number = 0
    try:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield BadLine(number, f"{name}:{number}: not valid JSON ({exc})")
                return
            if not isinstance(record, dict):
                yield BadLine(number, f"{name}:{number}: expected a JSON object")
                return
            yield record
    except UnicodeDecodeError:
        yield BadLine(number + 1, f"{name}:{number + 1}: not UTF-8 text")


def _single_record(args: argparse.Namespace, task: Task) -> Record:
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


def _field(record: Record, name: str) -> str:
    value = record.get(name)
    if not isinstance(value, str):
        raise InvalidInput(f"This input has no string field {name!r}.")
    return value


def _messages(record: Record) -> tuple[ChatMessage, ...]:
    value = record.get("messages")
    problem = InvalidInput(
        'The field \'messages\' must be a list of {"role": "system" | "user" | '
        '"assistant", "content": "..."} objects.'
    )
    if not isinstance(value, list) or not value:
        raise problem
    messages = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            raise problem
        try:
            messages.append(ChatMessage(item.get("role"), item["content"]))  # type: ignore[arg-type]
        except ValueError:
            raise problem from None
    return tuple(messages)


def build_request(
    task: Task, record: Record, args: argparse.Namespace
) -> EncoderRequest[Any] | GenerationRequest:
    """The registry request for one input; :class:`InvalidInput` when a field is missing."""
    if task is Task.SENTIMENT:
        return ClassifyRequest(_field(record, "text"), args.top_k or 1)
    if task is Task.NER:
        return NERRequest(_field(record, "text"))
    if task is Task.QA:
        return QARequest(
            _field(record, "question"),
            _field(record, "context"),
            args.top_k or 1,
            handle_impossible_answer=args.handle_impossible_answer,
        )
    params = GenerationParams(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        use_chat_template=False if args.no_chat_template else None,
        seed=args.seed,
    )
    if "messages" in record:
        return GenerationRequest(_messages(record), params)
    return GenerationRequest.from_prompt(_field(record, "prompt"), params, system=args.system)


# ----------------------------------------------------------------- answering


def answerer(
    registry: ModelRegistry,
    task: Task,
    args: argparse.Namespace,
    *,
    stream_to: TextIO | None = None,
) -> Answer:
    """Answer one input record with ``registry`` (generated text also streams to ``stream_to``).

    A full queue is waited out, never reported: the CLI keeps fewer requests in flight than the
    queue holds, but the registry may be shared.
    """

    async def answer(record: Record) -> Any:
        request = build_request(task, record, args)
        while True:
            try:
                if isinstance(request, GenerationRequest):
                    return await _generate(registry, request, stream_to)
                return await registry.submit(request)
            except QueueFull as exc:
                log.info("queue full; retrying in %.1f s", exc.eta_s)
                await asyncio.sleep(min(max(exc.eta_s, 0.05), 1.0))

    return answer


async def _generate(
    registry: ModelRegistry, request: GenerationRequest, stream_to: TextIO | None
) -> Any:
    stream = registry.stream(request)
    async for piece in stream:
        if stream_to is not None:
            stream_to.write(piece)
            stream_to.flush()
    return stream.stats


def to_jsonable(result: Any) -> Any:
    """Results as plain JSON values (dataclasses become objects)."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    return result


def _error_line(error: ModelError) -> str:
    return json.dumps({"error": str(error), "type": type(error).__name__})


def _take(lines: Iterator[Record | BadLine], count: int) -> list[Record | BadLine]:
    return list(itertools.islice(lines, count))


async def answer_lines(
    lines: Iterator[Record | BadLine],
    answer: Answer,
    out: TextIO,
    *,
    window: int,
) -> bool:
    """Answer every line with at most ``window`` in flight, writing one JSON line per input
    line to ``out`` in input order as the answers come; return whether any line failed.

    Raises :class:`UsageError` at a :class:`BadLine` (after the lines before it are written),
    and the first :class:`ModelError` that is not about one input (the model cannot serve).
    """
    pending: deque[asyncio.Task[Any]] = deque()
    failed = False
    bad: BadLine | None = None
    exhausted = False
    try:
        while True:
            if not exhausted and bad is None and len(pending) < window:
                # Reading and JSON parsing run off the event loop, a window's worth at a time.
                wanted = window - len(pending)
                batch = await asyncio.to_thread(_take, lines, wanted)
                exhausted = len(batch) < wanted
                for item in batch:
                    if isinstance(item, BadLine):
                        bad = item
                        break
                    pending.append(asyncio.ensure_future(answer(item)))
            if not pending:
                break
            await asyncio.wait({pending[0]})
            while pending and pending[0].done():
                outcome = pending.popleft()
                error = outcome.exception()
                if error is None:
                    out.write(json.dumps(to_jsonable(outcome.result()), ensure_ascii=False))
                elif isinstance(error, InvalidInput):
                    failed = True
                    out.write(_error_line(error))
                else:
                    raise error
                out.write("\n")
            out.flush()
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    if bad is not None:
        raise UsageError(bad.problem)
    return failed


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


async def run(
    args: argparse.Namespace, settings: Settings, *, single: Record | None, lines: TextIO | None
) -> int:
    """Answer the one ``single`` record, or every line of ``lines``; print the results."""
    from models.registry import ModelRegistry

    task = CLI_TASKS[args.task]
    spec = build_spec(args, settings)
    registry = ModelRegistry(
        [spec],
        allowed_roots=settings.allowed_model_roots,
        torch_threads=args.threads or settings.torch_threads,
    )
    try:
        if lines is not None:
            failed = await answer_lines(
                read_jsonl(lines, args.jsonl),
                answerer(registry, task, args),
                sys.stdout,
                window=spec.queue_depth,
            )
            return EXIT_FAILED if failed else EXIT_OK
        assert single is not None
        streams = task is Task.GENERATION and not args.json
        answer = answerer(registry, task, args, stream_to=sys.stdout if streams else None)
        try:
            result = await answer(single)
        except ModelError as exc:
            if args.json:
                print(_error_line(exc))
            else:
                print(str(exc), file=sys.stderr)
            return EXIT_FAILED
        print(
            json.dumps(to_jsonable(result), ensure_ascii=False)
            if args.json
            else _human(task, result)
        )
        return EXIT_OK
    finally:
        await registry.close()


def _main_ask(args: argparse.Namespace, settings: Settings) -> int:
    if args.documents is None:
        raise UsageError("ask needs --documents DIR")
    if (args.question is None) == (args.jsonl is None):
        raise UsageError("ask needs --question or --jsonl (one of them)")
    lines = _open_lines(args.jsonl) if args.jsonl is not None else None
    try:
        return asyncio.run(run_ask(args, settings, lines=lines))
    finally:
        if lines is not None and lines is not sys.stdin:
            lines.close()


async def run_ask(args: argparse.Namespace, settings: Settings, *, lines: TextIO | None) -> int:
    """Index the documents folder, then answer ``--question`` or every line of ``lines``."""
    from bot.documents.embedding import RegistryEmbedder
    from bot.documents.folder import FolderError, IndexingFailed, human, index_folder
    from models.registry import ModelRegistry

    qa = build_spec(args, settings, Task.QA)
    embedding = settings.model_specs()[Task.EMBEDDING]
    if args.device:
        embedding = dataclasses.replace(embedding, device=args.device)
    if args.embedding_model:
        embedding = embedding.with_model(args.embedding_model)
    registry = ModelRegistry(
        [qa, embedding],
        allowed_roots=settings.allowed_model_roots,
        torch_threads=args.threads or settings.torch_threads,
    )
    try:
        async with index_folder(
            Path(args.documents),
            RegistryEmbedder(registry),
            passages=args.top_k or settings.ask_passages,
            verbose=args.verbose,
        ) as folder:

            async def answer(record: Record) -> Any:
                return await folder.ask(registry, _field(record, "question"))

            if lines is not None:
                failed = await answer_lines(
                    read_jsonl(lines, args.jsonl), answer, sys.stdout, window=qa.queue_depth // 4
                )
                return EXIT_FAILED if failed else EXIT_OK
            try:
                result = await answer({"question": args.question})
            except ModelError as exc:
                if args.json:
                    print(_error_line(exc))
                else:
                    print(str(exc), file=sys.stderr)
                return EXIT_FAILED
            print(json.dumps(result, ensure_ascii=False) if args.json else human(result))
            return EXIT_OK
    except FolderError as exc:
        raise UsageError(str(exc)) from None
    except IndexingFailed as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_FAILED
    finally:
        await registry.close()


def _open_lines(path: str) -> TextIO:
    if path == "-":
        return sys.stdin
    try:
        return open(path, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


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
    lines: TextIO | None = None
    try:
        if args.top_k is not None and args.top_k < 1:
            raise UsageError("--top-k must be at least 1")
        settings = load_settings(args.env_file)
        if args.task == ASK:
            return _main_ask(args, settings)
        task = CLI_TASKS[args.task]
        single = _single_record(args, task) if args.jsonl is None else None
        lines = _open_lines(args.jsonl) if args.jsonl is not None else None
        return asyncio.run(run(args, settings, single=single, lines=lines))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ModelError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_FAILED
    finally:
        if lines is not None and lines is not sys.stdin:
            lines.close()
