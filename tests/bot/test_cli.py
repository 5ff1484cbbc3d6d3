from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from bot.logs import RedactingFormatter

ROOT = Path(__file__).resolve().parents[2]


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith("HFCORD_") and k != "DISCORD_TOKEN"
    }
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=cwd,
        timeout=120,
    )


def test_check_without_token_is_one_sentence_and_exit_2(tmp_path: Path) -> None:
    result = run_cli("check", cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("DISCORD_TOKEN is not set")
    assert "Traceback" not in result.stderr + result.stdout


def test_run_without_token_exits_2_without_traceback(tmp_path: Path) -> None:
    result = run_cli(cwd=tmp_path)
    assert result.returncode == 2
    assert "DISCORD_TOKEN" in result.stderr and "Traceback" not in result.stderr


def test_bad_setting_names_the_variable(tmp_path: Path) -> None:
    result = run_cli("check", env={"HFCORD_DEVICE": "tpu", "DISCORD_TOKEN": "x" * 40}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("HFCORD_DEVICE: expected cpu")


def test_check_reports_store_and_models(tmp_path: Path) -> None:
    model_dir = tmp_path / "local-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    env = {
        "DISCORD_TOKEN": "x" * 40,
        "HFCORD_DATA_DIR": str(tmp_path / "data"),
        "HFCORD_SENTIMENT_MODEL": str(model_dir),
        "HFCORD_NER_MODEL": str(tmp_path / "missing"),
        "HF_HUB_OFFLINE": "1",
    }
    result = run_cli("check", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert (tmp_path / "data" / "hfcord.sqlite3").exists()
    assert f"sentiment: {model_dir}: local path, present" in result.stdout
    assert "problem: ner model" in result.stderr
    assert "problem: generation model gpt2: not in the local cache" in result.stderr
    assert "x" * 40 not in result.stdout + result.stderr


def test_env_file_is_honoured(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("HFCORD_DEVICE=tpu\n")
    result = run_cli("check", cwd=tmp_path)
    assert result.returncode == 2 and "HFCORD_DEVICE" in result.stderr


def test_formatter_redacts_the_token() -> None:
    token = "MTIz.very-secret-token-value"
    formatter = RedactingFormatter("%(message)s", [token])
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token is %s", (token,), None)
    assert formatter.format(record) == "token is [redacted]"
    try:
        raise RuntimeError(f"login failed for {token}")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    assert token not in formatter.format(record)


def test_check_reports_a_model_setting_that_is_neither_a_hub_id_nor_a_path(
    tmp_path: Path,
) -> None:
    env = {
        "DISCORD_TOKEN": "x" * 40,
        "HFCORD_DATA_DIR": str(tmp_path / "data"),
        "HFCORD_QA_MODEL": "has space",
        "HF_HUB_OFFLINE": "1",
    }
    result = run_cli("check", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "qa: has space: not a model reference" in result.stdout
    assert "problem: qa model has space: neither a Hugging Face model id" in result.stderr
    assert "Traceback" not in result.stderr


def _engine_env(tmp_path: Path, base_url: str, model: str = "fake-model") -> dict[str, str]:
    model_dir = tmp_path / "local-model"
    model_dir.mkdir(exist_ok=True)
    (model_dir / "config.json").write_text("{}")
    return {
        "DISCORD_TOKEN": "x" * 40,
        "HFCORD_DATA_DIR": str(tmp_path / "data"),
        "HFCORD_SENTIMENT_MODEL": str(model_dir),
        "HFCORD_NER_MODEL": str(model_dir),
        "HFCORD_QA_MODEL": str(model_dir),
        "HFCORD_EMBEDDING_MODEL": str(model_dir),
        "HFCORD_GENERATION_BACKEND": "openai",
        "HFCORD_GENERATION_BASE_URL": base_url,
        "HFCORD_GENERATION_MODEL": model,
        "HFCORD_GENERATION_API_KEY": "sk-cli-secret",
        "HF_HUB_OFFLINE": "1",
    }


async def test_check_lists_the_engines_models(tmp_path: Path) -> None:
    import asyncio

    from tests.support.fake_engine import FakeEngine

    async with FakeEngine(models=["fake-model", "other"]) as engine:
        env = _engine_env(tmp_path, engine.base_url)
        result = await asyncio.to_thread(run_cli, "check", env=env, cwd=tmp_path)
        host = f"127.0.0.1:{engine.port}"
        assert result.returncode == 0, result.stderr
        assert f"generation: fake-model: openai engine at {host}, answering in" in result.stdout
        assert "it serves: fake-model, other" in result.stdout
        wrong = await asyncio.to_thread(
            run_cli, "check", env=_engine_env(tmp_path, engine.base_url, "nope"), cwd=tmp_path
        )
    assert wrong.returncode == 1
    (problem,) = [line for line in wrong.stderr.splitlines() if line.startswith("problem:")]
    assert problem == (
        f"problem: generation engine at {engine.base_url}: does not list the model 'nope' "
        "(it lists: fake-model, other)"
    )
    assert "sk-cli-secret" not in result.stdout + result.stderr + wrong.stdout + wrong.stderr


def test_check_says_in_one_line_that_the_engine_is_down(tmp_path: Path) -> None:
    from tests.support.engines import free_port

    base_url = f"http://127.0.0.1:{free_port()}/v1"
    result = run_cli("check", env=_engine_env(tmp_path, base_url), cwd=tmp_path)
    assert result.returncode == 1
    problems = [line for line in result.stderr.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1
    assert problems[0].startswith(f"problem: generation engine at {base_url}: cannot connect")
    assert "not answering" in result.stdout and "Traceback" not in result.stderr
