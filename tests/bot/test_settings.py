from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.settings import Settings, SettingsError


def load(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings.load(env_file=None)


def test_defaults_are_the_seed_models(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(monkeypatch)
    assert settings.generation_model == "gpt2"
    assert settings.sentiment_model == "distilbert-base-uncased-finetuned-sst-2-english"
    assert settings.ner_model == "dbmdz/bert-large-cased-finetuned-conll03-english"
    assert settings.qa_model == "distilbert-base-cased-distilled-squad"
    assert settings.data_dir == Path("data").resolve()  # absolute from the start (issue 10)
    assert settings.database_path == Path("data").resolve() / "hfcord.sqlite3"
    assert settings.admin_ids == frozenset()
    assert settings.discord_token is None


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = load(
        monkeypatch,
        HFCORD_DATA_DIR=str(tmp_path),
        HFCORD_ADMIN_IDS="12, 34;56",
        HFCORD_DEV_GUILD_ID="99",
        HFCORD_GENERATION_MODEL="/models/smol",
        HFCORD_GENERATION_GGUF_FILE="smol.Q4_1.gguf",
        HFCORD_MODEL_ROOTS=f"{tmp_path}/a,{tmp_path}/b",
        HFCORD_DEVICE="CUDA:1",
    )
    assert settings.admin_ids == frozenset({12, 34, 56})
    assert settings.dev_guild_id == 99
    assert settings.generation_gguf_file == "smol.Q4_1.gguf"
    assert settings.device == "cuda:1"
    # The registry loads fine-tuned models and the operator's roots, never the whole data dir.
    assert settings.allowed_model_roots == (
        tmp_path.resolve() / "models",
        (tmp_path / "a").resolve(),
        (tmp_path / "b").resolve(),
    )


def test_env_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("HFCORD_SENTIMENT_MODEL=my/model\nHFCORD_USER_BUDGET_WINDOW_S=2.5\n")
    settings = Settings.load(env_file=env_file)
    assert settings.sentiment_model == "my/model"
    assert settings.user_budget_window_s == 2.5


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "HFCORD_ADMIN_IDS",
            "12,abc",
            "HFCORD_ADMIN_IDS: expected comma-separated Discord user ids",
        ),
        ("HFCORD_DEV_GUILD_ID", "guild", "HFCORD_DEV_GUILD_ID: Input should be a valid integer"),
        ("HFCORD_USER_BUDGET", "-1", "HFCORD_USER_BUDGET: Input should be greater"),
        ("HFCORD_USER_MAX_IN_FLIGHT", "0", "HFCORD_USER_MAX_IN_FLIGHT: Input should be greater"),
        ("HFCORD_QA_MAX_WINDOWS", "0", "HFCORD_QA_MAX_WINDOWS: Input should be greater"),
        ("HFCORD_DEVICE", "tpu", "HFCORD_DEVICE: expected cpu, cuda, cuda:N or mps"),
        (
            "HFCORD_GENERATION_GGUF_FILE",
            "model.bin",
            "HFCORD_GENERATION_GGUF_FILE: expected a file",
        ),
        (
            "HFCORD_SENTIMENT_MODEL",
            "  ",
            "HFCORD_SENTIMENT_MODEL: expected a Hugging Face model id",
        ),
        ("HFCORD_LOG_LEVEL", "loud", "HFCORD_LOG_LEVEL: expected one of"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load(monkeypatch, **{name: value})
    assert any(problem.startswith(expected) for problem in caught.value.problems), (
        caught.value.problems
    )


def test_every_bad_variable_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError) as caught:
        load(monkeypatch, HFCORD_DEVICE="tpu", HFCORD_MAX_NEW_TOKENS="lots")
    assert len(caught.value.problems) == 2


def test_token_never_in_repr_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    token = "MTIzNDU2Nzg5.secret-token-value.abcdefghijklmnop"
    settings = load(monkeypatch, DISCORD_TOKEN=token)
    assert token not in repr(settings)
    assert token not in str(settings)
    assert token not in settings.model_dump_json()
    assert settings.token_value() == token
    with pytest.raises(SettingsError) as caught:
        load(monkeypatch, DISCORD_TOKEN=token, HFCORD_DEVICE="tpu")
    assert token not in str(caught.value)


def test_missing_token_is_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(monkeypatch)
    with pytest.raises(SettingsError) as caught:
        settings.token_value()
    assert caught.value.problems[0].startswith("DISCORD_TOKEN is not set")


def test_settings_are_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(monkeypatch)
    with pytest.raises(ValidationError):
        settings.max_new_tokens = 5  # type: ignore[misc]
    assert settings.model_copy(update={"max_new_tokens": 5}).max_new_tokens == 5


def test_env_example_loads_as_is_and_documents_every_setting() -> None:
    example = Path(__file__).resolve().parents[2] / ".env.example"
    settings = Settings.load(env_file=example)
    assert settings == Settings.load(env_file=None)  # the example shows the defaults
    documented = {
        line.split("=", 1)[0]
        for line in example.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    aliases = {field.alias for field in Settings.model_fields.values()}
    assert documented == aliases


def test_model_specs_map_every_task_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from models.specs import Task, default_spec

    settings = load(
        monkeypatch,
        HFCORD_SENTIMENT_MODEL="my/model",
        HFCORD_GENERATION_MODEL="/models/smol",
        HFCORD_GENERATION_GGUF_FILE="smol.Q4_1.gguf",
        HFCORD_MAX_NEW_TOKENS="64",
        HFCORD_QA_MAX_WINDOWS="7",
        HFCORD_DEVICE="cuda:1",
    )
    specs = settings.model_specs()
    assert list(specs) == list(Task)
    assert all(spec.device == "cuda:1" for spec in specs.values())
    assert specs[Task.SENTIMENT] == default_spec(Task.SENTIMENT, "my/model", device="cuda:1")
    assert specs[Task.QA].model_id == settings.qa_model
    assert specs[Task.QA].max_windows == 7
    generation = specs[Task.GENERATION]
    assert (generation.model_id, generation.gguf_file) == ("/models/smol", "smol.Q4_1.gguf")
    assert generation.max_new_tokens == 64


def test_each_task_setting_is_a_settings_variable_with_the_tasks_default() -> None:
    from models.tasks import TASKS

    fields = {field.alias: field for field in Settings.model_fields.values()}
    for info in TASKS.values():
        assert fields[info.setting].default == info.default_model


def test_data_dir_and_model_roots_are_absolute_once_loaded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Issue 10, item 2: a relative HFCORD_DATA_DIR means the folder the bot started in, once;
    changing the working directory later changes nothing."""
    monkeypatch.chdir(tmp_path)
    settings = load(monkeypatch, HFCORD_DATA_DIR="./data", HFCORD_MODEL_ROOTS="models,~/x")
    monkeypatch.chdir("/")
    assert settings.data_dir == tmp_path.resolve() / "data"
    assert settings.models_dir == tmp_path.resolve() / "data" / "models"
    assert settings.model_roots == (tmp_path.resolve() / "models", (Path.home() / "x").resolve())


def test_fair_use_settings_have_sane_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(monkeypatch)
    assert (settings.finetune_max_active_jobs, settings.finetune_max_stored_models) == (2, 5)
    assert settings.finetune_max_rows == 200_000
    assert settings.finetune_hub_max_bytes == settings.finetune_max_parameters == 1_000_000_000
    assert (settings.parse_memory_mb, settings.parse_timeout_s) == (1024, 300.0)
    with pytest.raises(SettingsError, match="HFCORD_FINETUNE_MAX_ACTIVE_JOBS"):
        load(monkeypatch, HFCORD_FINETUNE_MAX_ACTIVE_JOBS="0")
    with pytest.raises(SettingsError, match="HFCORD_PARSE_MEMORY_MB"):
        load(monkeypatch, HFCORD_PARSE_MEMORY_MB="10")


def test_encoder_runtime_reaches_every_encoder_task(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from models.specs import Task

    default = load(monkeypatch).model_specs()
    assert {spec.runtime for spec in default.values()} == {"torch"}
    settings = load(monkeypatch, HFCORD_ENCODER_RUNTIME="onnx-int8", HFCORD_DATA_DIR=str(tmp_path))
    specs = settings.model_specs()
    encoders = [Task.SENTIMENT, Task.NER, Task.QA, Task.EMBEDDING]
    assert all(specs[task].runtime == "onnx-int8" for task in encoders)
    assert all(specs[task].runtime_cache == str(tmp_path / "onnx") for task in encoders)
    assert specs[Task.GENERATION].runtime == "torch"
    # A per-server model (a promoted fine-tune) keeps the runtime.
    assert specs[Task.SENTIMENT].with_model("/data/models/job-3").runtime == "onnx-int8"
    with pytest.raises(SettingsError) as caught:
        load(monkeypatch, HFCORD_ENCODER_RUNTIME="tensorrt")
    assert caught.value.problems[0].startswith("HFCORD_ENCODER_RUNTIME")


def test_openai_backend_makes_an_engine_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    from models.specs import Task

    key = "sk-engine-secret-value-123"
    settings = load(
        monkeypatch,
        HFCORD_GENERATION_BACKEND="openai",
        HFCORD_GENERATION_BASE_URL=" http://10.0.0.5:8000/v1 ",
        HFCORD_GENERATION_MODEL="meta-llama/Llama-3.1-8B-Instruct",
        HFCORD_GENERATION_API_KEY=key,
        HFCORD_GENERATION_GGUF_FILE="ignored.gguf",
        HFCORD_GENERATION_READ_TIMEOUT_S="12.5",
        HFCORD_GENERATION_ENGINE_STREAMS="8",
        HFCORD_MAX_NEW_TOKENS="64",
    )
    spec = settings.model_specs()[Task.GENERATION]
    assert spec.backend == "openai" and spec.engine is not None
    assert spec.engine.base_url == "http://10.0.0.5:8000/v1" and spec.engine.host == "10.0.0.5:8000"
    assert spec.engine.api_key == key and spec.engine.read_timeout_s == 12.5
    assert spec.engine.connect_timeout_s == 3.0
    assert (spec.max_batch, spec.queue_depth, spec.max_new_tokens) == (8, 32, 64)
    assert spec.gguf_file is None  # a GGUF file is for the local backend
    assert spec.name == "meta-llama/Llama-3.1-8B-Instruct"
    for shown in (repr(settings), str(settings), settings.model_dump_json(), repr(spec)):
        assert key not in shown
    assert key in settings.secrets()
    # the other tasks stay local
    assert all(s.engine is None for t, s in settings.model_specs().items() if t != Task.GENERATION)


def test_local_backend_is_the_default_and_keeps_the_local_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from models.specs import Task
    from models.tasks import task_info

    settings = load(monkeypatch, HFCORD_GENERATION_BASE_URL="http://127.0.0.1:8000/v1")
    spec = settings.model_specs()[Task.GENERATION]
    assert settings.generation_backend == "local" and spec.engine is None
    assert spec.backend == "local"
    assert spec.max_batch == task_info(Task.GENERATION).batching["max_batch"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"HFCORD_GENERATION_BACKEND": "openai", "HFCORD_GENERATION_MODEL": "m"},
            "HFCORD_GENERATION_BACKEND=openai needs HFCORD_GENERATION_BASE_URL",
        ),
        (
            {
                "HFCORD_GENERATION_BACKEND": "openai",
                "HFCORD_GENERATION_BASE_URL": "http://127.0.0.1:8000/v1",
            },
            "HFCORD_GENERATION_BACKEND=openai needs HFCORD_GENERATION_MODEL",
        ),
        ({"HFCORD_GENERATION_BACKEND": "vllm"}, "HFCORD_GENERATION_BACKEND: Input should be"),
        (
            {"HFCORD_GENERATION_BASE_URL": "127.0.0.1:8000"},
            "HFCORD_GENERATION_BASE_URL: expected the server's http(s) address",
        ),
        ({"HFCORD_GENERATION_READ_TIMEOUT_S": "0"}, "HFCORD_GENERATION_READ_TIMEOUT_S:"),
        ({"HFCORD_SHARD_IDS": "0,1"}, "HFCORD_SHARD_IDS needs HFCORD_SHARD_COUNT"),
        (
            {"HFCORD_SHARD_COUNT": "2", "HFCORD_SHARD_IDS": "1,2"},
            "HFCORD_SHARD_IDS must be below HFCORD_SHARD_COUNT (2)",
        ),
        ({"HFCORD_SHARD_COUNT": "4", "HFCORD_SHARD_IDS": "1,x"}, "HFCORD_SHARD_IDS: expected"),
        ({"HFCORD_SHARD_COUNT": "4", "HFCORD_SHARD_IDS": "1,1"}, "a shard is listed twice"),
        ({"HFCORD_SHARD_COUNT": "0"}, "HFCORD_SHARD_COUNT:"),
    ],
)
def test_engine_and_shard_settings_are_checked(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load(monkeypatch, **env)
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems


def test_shard_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not load(monkeypatch).sharded
    settings = load(monkeypatch, HFCORD_SHARD_COUNT="8", HFCORD_SHARD_IDS=" 5, 4 ;6")
    assert settings.sharded and settings.shard_count == 8 and settings.shard_ids == (4, 5, 6)
    every = load(monkeypatch, HFCORD_SHARD_COUNT="3", HFCORD_SHARD_IDS="")
    assert every.shard_ids is None  # all of them
