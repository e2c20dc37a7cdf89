"""A small, real OpenAI-compatible HTTP server for tests and benchmarks (uvicorn + Starlette).

It serves POST /v1/chat/completions, POST /v1/completions (echo + logprobs in vLLM's legacy format) and
GET /v1/models, with a deterministic word tokenizer. Tests script it: fixed latency, a failure mix
(429 with Retry-After, 500, 400, hang past the client's timeout, garbage bodies) by probability or by a
per-request script, a hook that decides the answer text, and counters (total, per endpoint, per prompt
hash, peak in-flight) read back by the test. Top logprobs always include the digit tokens "0".."10", with
a distribution peaked at `digit_for(token)`, so a logprob simulator has something to read.

In-process: the `fake_openai` fixture (a server in a background thread). Out of process (benchmarks, so
the server does not share the client's GIL): `python -m tests.fake_openai --latency 0.05` prints
`PORT <n>` and serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

FAILURES = ("429", "500", "hang", "garbage")
OUTCOMES = ("ok", "400", "empty", *FAILURES)
DIGITS = [str(i) for i in range(11)]
_TOKEN = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")


def tokenize(text: str) -> list[tuple[str, int]]:
    """Deterministic word tokenizer: (token text, char offset)."""
    return [(m.group(), m.start()) for m in _TOKEN.finditer(text)]


def prompt_hash(body: dict) -> str:
    what = body.get("messages", body.get("prompt"))
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def _default_digit(token: str) -> int:
    return int(hashlib.md5(token.encode()).hexdigest(), 16) % 11


def _default_answer(endpoint: str, body: dict) -> str:
    return f"words about topic {prompt_hash(body)[:6]}"


@dataclass
class FakeOpenAI:
    """Behaviour and counters; change the fields between (or during) requests."""

    latency_s: float = 0.0
    failure_rate: float = 0.0
    failure_kinds: tuple[str, ...] = FAILURES
    script: list[str] = field(default_factory=list)  # outcomes consumed one per request, before failure_rate
    retry_after: str = "1"
    hang_s: float = 5.0
    seed: int = 0
    answer: Callable[[str, dict], str] = _default_answer  # (endpoint, body) -> answer text
    digit_for: Callable[[str], int] = _default_digit
    url: str = ""  # base URL ending in /v1, set once started
    requests: int = 0
    by_endpoint: Counter = field(default_factory=Counter)
    by_prompt: Counter = field(default_factory=Counter)
    by_outcome: Counter = field(default_factory=Counter)
    arrivals: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, outcome)
    authorization: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # --- behaviour -------------------------------------------------------------------------------------
    def _outcome(self) -> str:
        if self.script:
            outcome = self.script.pop(0)
            if outcome not in OUTCOMES:
                raise ValueError(f"fake_openai script: unknown outcome {outcome!r}; use one of {OUTCOMES}")
            return outcome
        if self.failure_rate and self._rng.random() < self.failure_rate:
            return self._rng.choice(self.failure_kinds)
        return "ok"

    def _top(self, token: str, k: int) -> dict[str, float]:
        peak = self.digit_for(token)
        scores = [-abs(i - peak) for i in range(11)]
        norm = math.log(sum(math.exp(s) for s in scores))
        ranked = sorted(zip(DIGITS, (s - norm for s in scores)), key=lambda x: -x[1])
        return dict(ranked[: max(k, 1)])

    def _logprob(self, token: str) -> float:
        return -0.1 - (len(token.strip()) % 5) * 0.3

    def _chat_body(self, body: dict) -> dict:
        prompt = "\n\n".join(str(m.get("content", "")) for m in body["messages"])
        text = self._truncate(self.answer("chat", body), body.get("max_tokens"))
        out_tokens = [t for t, _ in tokenize(text)]
        choice: dict = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text},
                        "logprobs": None}
        if body.get("logprobs"):
            k = body.get("top_logprobs") or 0
            choice["logprobs"] = {"content": [
                {"token": t, "logprob": self._logprob(t), "bytes": None,
                 "top_logprobs": [{"token": a, "logprob": v, "bytes": None} for a, v in self._top(t, k).items()]}
                for t in out_tokens]}
        return self._envelope("chat.completion", body, choice, len(tokenize(prompt)), len(out_tokens))

    def _completion_body(self, body: dict) -> dict:
        prompt = body["prompt"]
        text = self._truncate(self.answer("completions", body), body.get("max_tokens"))
        full = prompt + text if body.get("echo") else text
        choice: dict = {"index": 0, "finish_reason": "stop", "text": full, "logprobs": None}
        if body.get("logprobs") is not None:
            k = body["logprobs"]
            echo = bool(body.get("echo"))
            # prompt and answer are tokenised apart, as a server does: no token straddles the boundary
            toks = (tokenize(prompt) if echo else []) + [(t, o + len(prompt) * echo) for t, o in tokenize(text)]
            choice["logprobs"] = {
                "tokens": [t for t, _ in toks],
                "token_logprobs": [None if (i == 0 and echo) else self._logprob(t) for i, (t, _) in enumerate(toks)],
                "top_logprobs": [None if (i == 0 and echo) else self._top(t, k) for i, (t, _) in enumerate(toks)],
                "text_offset": [o for _, o in toks],
            }
        return self._envelope("text_completion", body, choice, len(tokenize(prompt)), len(tokenize(text)))

    @staticmethod
    def _truncate(text: str, max_tokens: int | None) -> str:
        if max_tokens is None:
            return text
        return "".join(t for t, _ in tokenize(text)[:max_tokens])

    @staticmethod
    def _envelope(obj: str, body: dict, choice: dict, n_prompt: int, n_completion: int) -> dict:
        return {"id": "fake-1", "object": obj, "created": int(time.time()), "model": body.get("model", "fake"),
                "choices": [choice],
                "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_completion,
                          "total_tokens": n_prompt + n_completion}}

    # --- HTTP ------------------------------------------------------------------------------------------
    async def _handle(self, request: Request) -> Response:
        body = await request.json()
        endpoint = "chat" if request.url.path.endswith("/chat/completions") else "completions"
        outcome = self._outcome()
        self.requests += 1
        self.by_endpoint[endpoint] += 1
        self.by_prompt[prompt_hash(body)] += 1
        self.by_outcome[outcome] += 1
        self.arrivals.append((time.monotonic(), outcome))
        self.authorization.append(request.headers.get("authorization", ""))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            if outcome == "429":
                return JSONResponse({"error": {"message": "rate limited", "type": "rate_limit_error"}},
                                    status_code=429, headers={"Retry-After": self.retry_after})
            if outcome in ("500", "400"):
                return JSONResponse({"error": {"message": f"fake {outcome}", "type": "fake"}}, status_code=int(outcome))
            if outcome == "garbage":
                return PlainTextResponse("<html>upstream hiccup</html>")
            if outcome == "empty":
                return JSONResponse({"id": "fake", "object": "chat.completion", "choices": []})
            if outcome == "hang":
                try:
                    await asyncio.sleep(self.hang_s)
                except asyncio.CancelledError:  # the server is stopping under a hung request: end it quietly
                    return Response(status_code=503)
            return JSONResponse(self._chat_body(body) if endpoint == "chat" else self._completion_body(body))
        finally:
            self.in_flight -= 1

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake-model", "object": "model", "owned_by": "test"}]})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/chat/completions", self._handle, methods=["POST"]),
            Route("/v1/completions", self._handle, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
        ])

    def _server_and_socket(self, port: int = 0) -> tuple[uvicorn.Server, socket.socket]:
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say so, and without it
        # Nagle + delayed ACK add 40 ms to every response written in two parts.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(2048)  # connections made before uvicorn runs wait in the backlog
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        config = uvicorn.Config(self.app(), log_level="warning", access_log=False, timeout_graceful_shutdown=1,
                                backlog=2048)
        return uvicorn.Server(config), sock

    def start(self) -> FakeOpenAI:
        """Serve in a background thread; returns once it accepts connections."""
        self._server, sock = self._server_and_socket()
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake OpenAI server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=5)


@pytest.fixture
def fake_openai(monkeypatch: pytest.MonkeyPatch):
    """A running fake server; OPENAI_BASE_URL points at it and OPENAI_API_KEY is a test key."""
    server = FakeOpenAI().start()
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-fake-key-123")
    yield server
    server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the fake OpenAI-compatible API until killed.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--failure-rate", type=float, default=0.0)
    args = parser.parse_args(argv)
    fake = FakeOpenAI(latency_s=args.latency, failure_rate=args.failure_rate, retry_after="0")
    server, sock = fake._server_and_socket(args.port)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
