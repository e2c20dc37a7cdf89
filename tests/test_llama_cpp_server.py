"""The remote logprob simulator against a real llama.cpp server: llama-cpp-python's OpenAI-compatible one,
serving the embedded SmolLM2 GGUF on 127.0.0.1.

llama-cpp-python builds from source (a quarter of an hour on two cores) and is no dependency of the project,
so it lives in its own virtualenv: point AUTOINTERP_LLAMA_CPP_PYTHON at that interpreter
(`python3.11 -m venv V && V/bin/pip install 'llama-cpp-python[server]'`). Without it the tests are skipped,
saying why. The server reads max_tokens=0 as "no limit" and fails a list of prompts with HTTP 500; SmolLM2
writes "10" as "1" then "0", so the simulation ends in the one error that points to json:."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llm_client import ECHO_MAX_TOKENS, make_client
from llm_client.local_models import embedded_gguf
from simulator import SimulationError
from simulator.logprob_remote import RemoteLogprobSimulator
from tests.closing import simulate_and_close

pytestmark = pytest.mark.slow  # a server start and echoes of ~1,000-token prompts on a 135M model
ENV = "AUTOINTERP_LLAMA_CPP_PYTHON"
START_TIMEOUT_S = 120.0


def _llama_cpp_python() -> str:
    python = os.environ.get(ENV)
    if not python:
        pytest.skip(f"{ENV} is not set: point it at a Python that has llama-cpp-python[server] installed")
    found = subprocess.run([python, "-c", "import llama_cpp.server"], capture_output=True, text=True)
    if found.returncode != 0:
        pytest.skip(f"{ENV}={python} cannot import llama_cpp.server: {found.stderr.strip()[-300:]}")
    return python


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    python = _llama_cpp_python()
    port = _free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([python, "-m", "llama_cpp.server", "--model", str(embedded_gguf("smollm2-135m")),
                                 "--logits_all", "true", "--n_ctx", "2048", "--host", "127.0.0.1",
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {proc.returncode}: {Path(log).read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama.cpp server not up after {START_TIMEOUT_S:g}s: {Path(log).read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_an_echo_request_generates_one_token_and_echoes_every_prompt_token(llama_server):
    prompt = "The bridge was finished in 1932.\nIt carried"
    client = make_client("openai:smollm2", base_url=llama_server, timeout_s=300)

    async def go():
        try:
            return await client.complete(prompt, max_tokens=ECHO_MAX_TOKENS, echo=True, logprobs=5)
        finally:
            await client.aclose()

    started = time.monotonic()
    completion = asyncio.run(go())
    assert time.monotonic() - started < 60  # max_tokens=0 would generate to the end of the 2,048-token context
    assert completion.usage.completion_tokens == 1
    assert len(completion.generated_logprobs or []) <= 1  # llama-cpp-python leaves the unevaluated token's row out
    rows = completion.prompt_logprobs or []
    assert "".join(row.token for row in rows) == prompt  # the prompt's rows, and no generated row among them
    assert completion.text_offsets is not None and completion.text_offsets[0] == 0
    assert rows[0].top == {} and all(row.top for row in rows[1:])  # the first token has nothing before it


def test_simulation_is_one_clear_failure_naming_json_for_a_digit_splitting_tokenizer(llama_server):
    records = [[" The", " bridge", " opened", " in", " 1932", "."], [" She", " paid", " 300", " francs", "."]]
    client = make_client("openai:smollm2", base_url=llama_server, timeout_s=300, backoff_s=0.01)
    sim = RemoteLogprobSimulator(client)
    # Two records: the list of prompts is refused (HTTP 500) and each goes alone; then SmolLM2's "1", "0".
    with pytest.raises(SimulationError, match=r'writes "10" as "1" then "0".*simulate with json:openai:smollm2'):
        asyncio.run(simulate_and_close(sim, "years", records))
    stats = client.stats()
    assert stats["failures"] == 0 and stats["completion_tokens"] == len(records)
    assert client.lists_taken is False  # type: ignore[attr-defined]
