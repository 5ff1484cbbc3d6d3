"""Typed, validated settings read from the environment and `.env`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models.engines import Engine
from models.specs import DEFAULT_QA_MAX_WINDOWS, ModelSpec, default_specs
from models.tasks import Task, task_info

DEFAULT_GENERATION_MODEL = task_info(Task.GENERATION).default_model
DEFAULT_SENTIMENT_MODEL = task_info(Task.SENTIMENT).default_model
DEFAULT_NER_MODEL = task_info(Task.NER).default_model
DEFAULT_QA_MODEL = task_info(Task.QA).default_model
DEFAULT_EMBEDDING_MODEL = task_info(Task.EMBEDDING).default_model

_LOG_LEVELS = {"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"}

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant in a Discord chat. Messages from people begin with their "
    "name. Keep your answers short."
)
MAX_SYSTEM_PROMPT_CHARS = 4000


class SettingsError(Exception):
    """Settings could not be loaded; the message names each bad variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything hfcord reads from its environment. Frozen once loaded."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        hide_input_in_errors=True,
        env_ignore_empty=True,
    )

    discord_token: SecretStr | None = Field(default=None, alias="DISCORD_TOKEN")
    data_dir: Path = Field(default=Path("./data"), alias="HFCORD_DATA_DIR")
    dev_guild_id: int | None = Field(default=None, alias="HFCORD_DEV_GUILD_ID", gt=0)
    admin_ids: Annotated[frozenset[int], NoDecode] = Field(
        default=frozenset(), alias="HFCORD_ADMIN_IDS"
    )

    generation_model: str = Field(default=DEFAULT_GENERATION_MODEL, alias="HFCORD_GENERATION_MODEL")
    generation_gguf_file: str | None = Field(default=None, alias="HFCORD_GENERATION_GGUF_FILE")
    # Generation on an OpenAI-compatible server instead of in this process (models/engines.py).
    generation_backend: Literal["local", "openai"] = Field(
        default="local", alias="HFCORD_GENERATION_BACKEND"
    )
    generation_base_url: str | None = Field(default=None, alias="HFCORD_GENERATION_BASE_URL")
    generation_api_key: SecretStr | None = Field(default=None, alias="HFCORD_GENERATION_API_KEY")
    generation_connect_timeout_s: float = Field(
        default=3.0, alias="HFCORD_GENERATION_CONNECT_TIMEOUT_S", gt=0, le=60
    )
    generation_read_timeout_s: float = Field(
        default=30.0, alias="HFCORD_GENERATION_READ_TIMEOUT_S", gt=0, le=600
    )
    generation_engine_streams: int = Field(
        default=16, alias="HFCORD_GENERATION_ENGINE_STREAMS", ge=1, le=1024
    )
    sentiment_model: str = Field(default=DEFAULT_SENTIMENT_MODEL, alias="HFCORD_SENTIMENT_MODEL")
    ner_model: str = Field(default=DEFAULT_NER_MODEL, alias="HFCORD_NER_MODEL")
    qa_model: str = Field(default=DEFAULT_QA_MODEL, alias="HFCORD_QA_MODEL")
    embedding_model: str = Field(default=DEFAULT_EMBEDDING_MODEL, alias="HFCORD_EMBEDDING_MODEL")
    model_roots: Annotated[tuple[Path, ...], NoDecode] = Field(
        default=(), alias="HFCORD_MODEL_ROOTS"
    )
    device: str = Field(default="cpu", alias="HFCORD_DEVICE")
    torch_threads: int | None = Field(default=None, alias="HFCORD_TORCH_THREADS", ge=1, le=256)
    # How the encoder tasks run their forward pass (models/onnx_runtime.py; README "Performance").
    encoder_runtime: Literal["torch", "onnx", "onnx-int8"] = Field(
        default="torch", alias="HFCORD_ENCODER_RUNTIME"
    )

    # Fair use (bot/usage.py): model requests per user per window, and at once.
    user_budget: int = Field(default=6, alias="HFCORD_USER_BUDGET", ge=0, le=10_000)
    user_budget_window_s: float = Field(
        default=30.0, alias="HFCORD_USER_BUDGET_WINDOW_S", gt=0, le=86_400
    )
    user_max_in_flight: int = Field(default=2, alias="HFCORD_USER_MAX_IN_FLIGHT", ge=1, le=100)
    max_input_chars: int = Field(default=2000, alias="HFCORD_MAX_INPUT_CHARS", ge=1, le=100_000)
    max_new_tokens: int = Field(default=200, alias="HFCORD_MAX_NEW_TOKENS", ge=1, le=4096)
    context_max_chars: int = Field(default=5_000_000, alias="HFCORD_CONTEXT_MAX_CHARS", ge=1)
    upload_max_bytes: int = Field(default=10_000_000, alias="HFCORD_UPLOAD_MAX_BYTES", ge=1)
    qa_min_score: float = Field(default=0.1, alias="HFCORD_QA_MIN_SCORE", ge=0, le=1)
    qa_max_windows: int = Field(
        default=DEFAULT_QA_MAX_WINDOWS, alias="HFCORD_QA_MAX_WINDOWS", ge=1, le=10_000
    )
    max_loaded_server_models: int = Field(
        default=4, alias="HFCORD_MAX_LOADED_SERVER_MODELS", ge=1, le=1000
    )
    ask_passages: int = Field(default=4, alias="HFCORD_ASK_PASSAGES", ge=1, le=32)
    finetune_upload_max_bytes: int = Field(
        default=20_000_000, alias="HFCORD_FINETUNE_UPLOAD_MAX_BYTES", ge=1
    )
    finetune_max_concurrent: int = Field(
        default=1, alias="HFCORD_FINETUNE_MAX_CONCURRENT", ge=1, le=16
    )
    # Fair use and sizes, per server and per job (see README, Fine-tuning).
    finetune_max_active_jobs: int = Field(
        default=2, alias="HFCORD_FINETUNE_MAX_ACTIVE_JOBS", ge=1, le=1000
    )
    finetune_max_stored_models: int = Field(
        default=5, alias="HFCORD_FINETUNE_MAX_STORED_MODELS", ge=1, le=10_000
    )
    finetune_max_rows: int = Field(default=200_000, alias="HFCORD_FINETUNE_MAX_ROWS", ge=2)
    finetune_hub_max_bytes: int = Field(
        default=1_000_000_000, alias="HFCORD_FINETUNE_HUB_MAX_BYTES", ge=1
    )
    finetune_max_parameters: int = Field(
        default=1_000_000_000, alias="HFCORD_FINETUNE_MAX_PARAMETERS", ge=1
    )
    # The process that reads an upload (bot.isolation): its memory and time.
    parse_memory_mb: int = Field(default=1024, alias="HFCORD_PARSE_MEMORY_MB", ge=64)
    parse_timeout_s: float = Field(default=300.0, alias="HFCORD_PARSE_TIMEOUT_S", gt=0, le=3600)
    # Conversations (cogs/chat.py, bot/conversations/).
    message_content_intent: bool = Field(default=False, alias="HFCORD_MESSAGE_CONTENT_INTENT")
    allow_dms: bool = Field(default=False, alias="HFCORD_ALLOW_DMS")
    chat_max_messages: int = Field(default=40, alias="HFCORD_CHAT_MAX_MESSAGES", ge=2, le=200)
    system_prompt: str = Field(default=DEFAULT_SYSTEM_PROMPT, alias="HFCORD_SYSTEM_PROMPT")
    chat_max_active_per_server: int = Field(
        default=3, alias="HFCORD_CHAT_MAX_ACTIVE_PER_SERVER", ge=1, le=1000
    )
    chat_temperature: float = Field(default=0.7, alias="HFCORD_CHAT_TEMPERATURE", ge=0, le=2)
    log_level: str = Field(default="INFO", alias="HFCORD_LOG_LEVEL")

    # Gateway sharding (bot/client.py): this process runs shards `shard_ids` of `shard_count`.
    shard_count: int | None = Field(default=None, alias="HFCORD_SHARD_COUNT", ge=1, le=100_000)
    shard_ids: Annotated[tuple[int, ...] | None, NoDecode] = Field(
        default=None, alias="HFCORD_SHARD_IDS"
    )

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _parse_admin_ids(cls, value: Any) -> Any:
        items = _split_list(value)
        if isinstance(items, list):
            for item in items:
                if isinstance(item, str) and not item.isdigit():
                    raise ValueError(
                        f"expected comma-separated Discord user ids (digits), got {item!r}"
                    )
            return frozenset(int(item) for item in items)
        return value

    @field_validator("model_roots", mode="before")
    @classmethod
    def _parse_roots(cls, value: Any) -> Any:
        items = _split_list(value)
        if isinstance(items, list):
            return tuple(Path(item) for item in items)
        return value

    @field_validator("model_roots", mode="after")
    @classmethod
    def _absolute_roots(cls, value: tuple[Path, ...]) -> tuple[Path, ...]:
        return tuple(root.expanduser().resolve() for root in value)

    @field_validator("shard_ids", mode="before")
    @classmethod
    def _parse_shard_ids(cls, value: Any) -> Any:
        items = _split_list(value)
        if isinstance(items, list):
            for item in items:
                if isinstance(item, str) and not item.isdigit():
                    raise ValueError(f"expected comma-separated shard numbers, got {item!r}")
            ids = tuple(int(item) for item in items)
            if len(set(ids)) != len(ids):
                raise ValueError("a shard is listed twice")
            return tuple(sorted(ids)) or None
        return value

    @field_validator("generation_base_url", mode="after")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"expected the server's http(s) address, like http://127.0.0.1:8000/v1, got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.generation_backend == "openai":
            if self.generation_base_url is None:
                raise ValueError(
                    "HFCORD_GENERATION_BACKEND=openai needs HFCORD_GENERATION_BASE_URL, the "
                    "server's address (like http://127.0.0.1:8000/v1)"
                )
            if "generation_model" not in self.model_fields_set:
                raise ValueError(
                    "HFCORD_GENERATION_BACKEND=openai needs HFCORD_GENERATION_MODEL, the model's "
                    "name on that server"
                )
        if self.shard_ids is not None:
            if self.shard_count is None:
                raise ValueError("HFCORD_SHARD_IDS needs HFCORD_SHARD_COUNT, the total of shards")
            if max(self.shard_ids) >= self.shard_count:
                raise ValueError(
                    f"HFCORD_SHARD_IDS must be below HFCORD_SHARD_COUNT ({self.shard_count}): "
                    "shards are numbered from 0"
                )
        return self

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        # Resolved once, here: jobs, uploads and promotions then work the same whatever the
        # working directory of the bot, or of the processes it starts, is.
        return value.expanduser().resolve()

    @field_validator(
        "generation_model",
        "sentiment_model",
        "ner_model",
        "qa_model",
        "embedding_model",
        mode="after",
    )
    @classmethod
    def _non_empty(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("expected a Hugging Face model id or a local path, got an empty value")
        return value

    @field_validator("generation_gguf_file", mode="after")
    @classmethod
    def _gguf_name(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.endswith(".gguf"):
            raise ValueError(f"expected a file name ending in .gguf, got {value!r}")
        return value.strip()

    @field_validator("system_prompt", mode="after")
    @classmethod
    def _system_prompt(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("expected the text of the default persona, got an empty value")
        if len(value) > MAX_SYSTEM_PROMPT_CHARS:
            raise ValueError(
                f"expected at most {MAX_SYSTEM_PROMPT_CHARS} characters, got {len(value)}"
            )
        return value

    @field_validator("device", mode="after")
    @classmethod
    def _device(cls, value: str) -> str:
        value = value.strip().lower()
        if value in {"cpu", "cuda", "mps"} or (value.startswith("cuda:") and value[5:].isdigit()):
            return value
        raise ValueError(f"expected cpu, cuda, cuda:N or mps, got {value!r}")

    @field_validator("log_level", mode="after")
    @classmethod
    def _log_level(cls, value: str) -> str:
        value = value.strip().upper()
        if value not in _LOG_LEVELS:
            raise ValueError(f"expected one of {', '.join(sorted(_LOG_LEVELS))}, got {value!r}")
        return value

    @classmethod
    def load(cls, env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
        """Read settings; raise `SettingsError` naming every bad variable."""
        try:
            return cls(_env_file=env_file, **overrides)  # type: ignore[call-arg]
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None

    @property
    def database_path(self) -> Path:
        return self.data_dir / "hfcord.sqlite3"

    @property
    def runtime_cache_dir(self) -> Path:
        """Where encoder models converted for HFCORD_ENCODER_RUNTIME are kept."""
        return self.data_dir / "onnx"

    @property
    def models_dir(self) -> Path:
        """Where fine-tuned models are written."""
        return self.data_dir / "models"

    @property
    def allowed_model_roots(self) -> tuple[Path, ...]:
        """Local folders the model registry loads a server's model from: fine-tuned models
        (promotions pass only the server's own job's folder) and ``HFCORD_MODEL_ROOTS``.

        Not what Discord may name: a base model given in Discord is a hub id, a job of that
        server, or a folder under ``model_roots`` only (`bot.finetune.base_models`); never the
        data folder, where other servers' models live.
        """
        return (self.models_dir, *self.model_roots)

    @property
    def sharded(self) -> bool:
        """Whether the bot connects as shards (HFCORD_SHARD_COUNT is set)."""
        return self.shard_count is not None

    def generation_engine(self) -> Engine | None:
        """The server generation runs on (None: in this process)."""
        if self.generation_backend == "local" or self.generation_base_url is None:
            return None
        key = self.generation_api_key.get_secret_value() if self.generation_api_key else None
        return Engine(
            kind=self.generation_backend,
            base_url=self.generation_base_url,
            api_key=key or None,
            connect_timeout_s=self.generation_connect_timeout_s,
            read_timeout_s=self.generation_read_timeout_s,
        )

    def model_specs(self) -> dict[Task, ModelSpec]:
        """The model each task serves, as the registry takes it: the one mapping from settings
        to model specs (the bot, `python -m bot infer` and `python -m bot check` use it)."""
        encoder = {"runtime": self.encoder_runtime, "runtime_cache": str(self.runtime_cache_dir)}
        generation: dict[str, object] = {"max_new_tokens": self.max_new_tokens}
        engine = self.generation_engine()
        if engine is None:
            generation["gguf_file"] = self.generation_gguf_file
        else:
            # The engine batches streams itself: hold more open at once than a local model.
            generation.update(
                engine=engine,
                max_batch=self.generation_engine_streams,
                queue_depth=4 * self.generation_engine_streams,
            )
        return default_specs(
            {
                Task.GENERATION: self.generation_model,
                Task.SENTIMENT: self.sentiment_model,
                Task.NER: self.ner_model,
                Task.QA: self.qa_model,
                Task.EMBEDDING: self.embedding_model,
            },
            device=self.device,
            overrides={
                Task.GENERATION: generation,
                Task.QA: {"max_windows": self.qa_max_windows, **encoder},
                Task.SENTIMENT: encoder,
                Task.NER: encoder,
                Task.EMBEDDING: encoder,
            },
        )

    def secrets(self) -> list[str]:
        """Values the logs must never show: the bot token and the engine's API key."""
        values = [self.discord_token, self.generation_api_key]
        return [v.get_secret_value().strip() for v in values if v and v.get_secret_value().strip()]

    def token_value(self) -> str:
        """The bot token; raises `SettingsError` when it is not set."""
        if self.discord_token is None or not self.discord_token.get_secret_value().strip():
            raise SettingsError(
                [
                    "DISCORD_TOKEN is not set: put your bot token in the environment or in .env "
                    "(see README.md, 'Create the Discord application')."
                ]
            )
        return self.discord_token.get_secret_value().strip()


def _describe(exc: ValidationError) -> list[str]:
    fields = Settings.model_fields
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        message = error["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        if not error["loc"]:  # a rule across settings: its message names them
            problems.append(message)
            continue
        name = str(error["loc"][0])
        field = fields.get(name)
        env_name = field.alias if field is not None and field.alias else name
        problems.append(f"{env_name}: {message}")
    return problems
