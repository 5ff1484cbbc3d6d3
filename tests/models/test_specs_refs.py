"""Specs, generation parameter bounds, model reference validation, torch-free imports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.errors import InvalidModelRef, QueueFull
from models.refs import (
    is_hub_id,
    is_local_ref,
    resolve_model_ref,
    validate_gguf_file,
    validate_revision,
)
from models.requests import GenerationParams
from models.specs import ModelSpec, Task, default_specs

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_default_specs_cover_every_task_with_the_seed_models() -> None:
    specs = default_specs()
    assert set(specs) == set(Task)
    assert specs[Task.GENERATION].model_id == "gpt2"
    assert specs[Task.SENTIMENT].model_id == "distilbert-base-uncased-finetuned-sst-2-english"
    assert specs[Task.NER].model_id == "dbmdz/bert-large-cased-finetuned-conll03-english"
    assert specs[Task.QA].model_id == "distilbert-base-cased-distilled-squad"
    assert specs[Task.QA].max_seq_len == 384 and specs[Task.QA].doc_stride == 128
    assert specs[Task.QA].max_answer_len == 15


def test_spec_validation_and_override_helper() -> None:
    with pytest.raises(ValueError):
        ModelSpec(task=Task.SENTIMENT, model_id=" ")
    with pytest.raises(ValueError):
        ModelSpec(task=Task.SENTIMENT, model_id="x", max_batch=0)
    with pytest.raises(ValueError):
        ModelSpec(task="nope", model_id="x")  # type: ignore[arg-type]
    base = default_specs()[Task.SENTIMENT]
    other = base.with_model("/data/models/job-1", description="fine-tuned by job 1")
    assert other.task is Task.SENTIMENT and other.max_batch == base.max_batch
    assert other.key != base.key
    # The description is for display; it does not make a different model.
    assert other.key == base.with_model("/data/models/job-1").key


def test_users_see_a_models_name_never_its_path() -> None:
    base = default_specs()[Task.SENTIMENT]
    assert base.name == "distilbert-base-uncased-finetuned-sst-2-english"
    local = base.with_model("/srv/hfcord/data/models/12")
    assert local.name == "12"
    named = base.with_model("/srv/hfcord/data/models/12", display_name="fine-tuned job #12")
    assert named.name == "fine-tuned job #12"
    assert named.key == local.key  # a name is for display; it does not make another model
    assert base.with_model("./models/my-sst2/").name == "my-sst2"
    assert base.with_model("~/models/ner").name == "ner"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (GenerationParams(max_new_tokens=10_000), dict(max_new_tokens=200)),
        (GenerationParams(max_new_tokens=0), dict(max_new_tokens=1)),
        (GenerationParams(temperature=5.0, top_p=3.0), dict(temperature=2.0, top_p=1.0)),
        (GenerationParams(temperature=-1.0, top_p=-1.0), dict(temperature=0.0, top_p=0.0)),
        (GenerationParams(temperature=float("nan")), dict(temperature=0.8)),
        (GenerationParams(repetition_penalty=9.0), dict(repetition_penalty=2.0)),
        (GenerationParams(repetition_penalty=0.1), dict(repetition_penalty=1.0)),
        (GenerationParams(), dict(max_new_tokens=200)),
    ],
)
def test_generation_params_are_clamped(params: GenerationParams, expected: dict) -> None:
    clamped = params.clamped(200)
    for name, value in expected.items():
        assert getattr(clamped, name) == value


def test_zero_temperature_means_greedy() -> None:
    assert not GenerationParams(temperature=0).clamped(10).do_sample
    assert GenerationParams(temperature=0.7).clamped(10).do_sample


@pytest.mark.parametrize(
    "ref",
    [
        "gpt2",
        "distilbert-base-uncased-finetuned-sst-2-english",
        "dbmdz/bert-large-cased-finetuned-conll03-english",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "a.b_c/d-e.f",
    ],
)
def test_valid_hub_ids(ref: str) -> None:
    assert is_hub_id(ref)
    assert resolve_model_ref(ref, []).kind == "hub"


@pytest.mark.parametrize(
    "ref",
    ["", "  ", "a/b/c", "-bad", "bad-", "a--b", "a..b", "has space", "x" * 97, "ünïcode", "a/"],
)
def test_invalid_refs_are_rejected(ref: str) -> None:
    assert not is_hub_id(ref.strip()) or not ref.strip()
    with pytest.raises(InvalidModelRef):
        resolve_model_ref(ref, [])


def test_local_folder_under_an_allowed_root(tmp_path: Path) -> None:
    model = tmp_path / "models" / "job-1"
    model.mkdir(parents=True)
    ref = resolve_model_ref(str(model), [tmp_path])
    assert ref.kind == "local" and ref.location == str(model.resolve())


def test_local_folder_outside_allowed_roots_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(InvalidModelRef, match="outside the folders"):
        resolve_model_ref(str(outside), [root])
    # A path that climbs out with ".." is judged by where it lands.
    with pytest.raises(InvalidModelRef, match="outside"):
        resolve_model_ref(str(root / ".." / "elsewhere"), [root])
    # The operator's own configuration is trusted.
    assert resolve_model_ref(str(outside), [root], trusted=True).kind == "local"


def test_symlink_escaping_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    secret = tmp_path / "secret"
    secret.mkdir()
    (root / "link").symlink_to(secret)
    with pytest.raises(InvalidModelRef, match="outside"):
        resolve_model_ref(str(root / "link"), [root])


def test_missing_local_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelRef, match="does not exist"):
        resolve_model_ref(str(tmp_path / "nope"), [tmp_path])


def test_hub_looking_name_of_an_existing_relative_folder_is_checked_as_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # transformers would load ./evil/model from disk, so it must pass the root check.
    (tmp_path / "evil" / "model").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidModelRef, match="outside"):
        resolve_model_ref("evil/model", [tmp_path / "allowed"])
    assert resolve_model_ref("evil/model", [tmp_path]).kind == "local"


@pytest.mark.parametrize(
    ("ref", "local"),
    [
        ("/srv/models/job-1", True),
        ("./models/job-1", True),
        ("../job-1", True),
        ("~/models/smol", True),
        ("data/models/job-1", True),
        ("C:\\models\\x", True),
        ("gpt2", False),
        ("owner/name", False),
        ("has space", False),
        ("", False),
    ],
)
def test_local_path_or_hub_id(ref: str, local: bool) -> None:
    assert is_local_ref(ref) is local


def test_a_hub_looking_ref_naming_an_existing_folder_is_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "owner" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert is_local_ref("owner/name") and not is_local_ref("owner/other")


def test_revision_and_gguf_names() -> None:
    validate_revision("main")
    validate_revision("v1.0")
    validate_gguf_file("SmolLM2-135M-Instruct.Q4_1.gguf")
    for bad in ("../main", "a b", ""):
        with pytest.raises(InvalidModelRef):
            validate_revision(bad)
    for bad in ("../x.gguf", "dir/x.gguf", "x.bin"):
        with pytest.raises(InvalidModelRef):
            validate_gguf_file(bad)


def test_queue_full_message_names_position_and_eta() -> None:
    error = QueueFull("gpt2", position=5, eta_s=12.4)
    assert "gpt2" in str(error) and "4 requests ahead" in str(error) and "12 s" in str(error)


def test_cog_facing_modules_do_not_import_torch() -> None:
    code = (
        "import sys, models, models.specs, models.results, models.errors, models.registry,"
        " models.tasks, models.requests, models.streams, models.runners;"
        "assert 'torch' not in sys.modules, 'torch imported';"
        "assert 'transformers' not in sys.modules, 'transformers imported'"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
