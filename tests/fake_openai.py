"""A small, real OpenAI-compatible HTTP server for tests and benchmarks (uvicorn + Starlette).

It serves POST /v1/chat/completions, POST /v1/completions (echo + logprobs in vLLM's legacy format; `prompt`
may be a list of prompts, one choice each, as vLLM and OpenAI's legacy API take it) and GET /v1/models, with
a deterministic word tokenizer. Switches make it behave like servers that do less: `refuse_lists` answers a
list of prompts with HTTP 400 and `ignore_logprobs` ignores echo and logprobs, as `transformers serve` does (chat
answers then come without top logprobs too); `split_digits` tokenizes every digit apart and offers "0".."9"
only, as Gemma's, Qwen's or Llama 2's tokenizers (no "10" token). `zero_max_tokens` says what max_tokens=0 means: "echo" (nothing generated, as vLLM reads it),
"unlimited" (generate until `context_tokens`, as llama.cpp's server does) or "refuse" (HTTP 400, as
`transformers serve` answers); `list_status=500` refuses a list of prompts as llama.cpp's server does (a failed assertion). Tests script it: fixed latency, a failure mix
(429 with Retry-After, 500, 400, hang past the client's timeout, garbage bodies) by probability or by a
per-request script, a hook that decides the answer text, and counters (total, per endpoint, per prompt
hash, peak in-flight) read back by the test. Top logprobs always include the digit tokens "0".."10", with
a distribution peaked at `digit_for(token)`, so a logprob simulator has something to read.

In-process: the `fake_openai` fixture (a server in a background thread). Out of process (benchmarks, so
the server does not share the client's GIL): `python -m tests.fake_openai --latency 0.05` prints
`PORT <n>` and serves until killed (`--refuse-lists`, `--ignore-logprobs` as above; `--max-concurrent 8`
queues requests beyond 8 at once, like a replica's batch limit; `--failure-rate 1 --failure-kinds 500` is
an endpoint that answers 500 to everything). Completion bodies are
assembled from per-token JSON fragments cached across requests, so the server keeps up with a benchmark's
client.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import json
import math
import os
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
OUTCOMES = ("ok", "400", "404", "empty", *FAILURES)  # 404: no such model, as OpenAI and vLLM answer it
DIGITS = [str(i) for i in range(11)]
_COMPACT = (",", ":")  # how Starlette's JSONResponse (and so vLLM) writes JSON
_TOKEN = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")
_TOKEN_SPLIT_DIGITS = re.compile(r"\s*\d|\s*[^\W\d]+|\s*[^\w\s]|\s+")


# Where a newline follows a non-space character, a token always ends (no _TOKEN alternative runs from a
# non-space character into a newline) and the next starts: text split there tokenises piece by piece exactly
# as it does whole. Prompts are line-shaped and their lines recur, so pieces are tokenised (and their JSON
# fragments built) once.
_PIECE_END = re.compile(r"(?<=\S)(?=\n)")


@functools.lru_cache(maxsize=1024)  # a request's prompt is tokenised for its body and again for its counts
def tokenize(text: str, split_digits: bool = False) -> tuple[tuple[str, int], ...]:
    """Deterministic word tokenizer: (token text, char offset); with `split_digits`, each digit a token."""
    return tuple((m.group(), m.start()) for m in (_TOKEN_SPLIT_DIGITS if split_digits else _TOKEN).finditer(text))


def _shared_prefix(prompts: list[str]) -> str:
    """The longest start every prompt shares that ends on a piece boundary ("" for a single prompt)."""
    if len(prompts) < 2:
        return ""
    common = os.path.commonprefix(prompts)
    ends = [m.start() for m in _PIECE_END.finditer(common)]  # each inside `common`: a boundary in every prompt
    return common[:ends[-1]] if ends else ""


@dataclass(frozen=True)
class _Piece:
    """One piece of a prompt: its tokens' JSON fragments (comma-joined, and one by one) and char offsets."""

    tokens: str
    logprobs: str
    tops: str
    token_list: tuple[str, ...]
    logprob_list: tuple[str, ...]
    top_list: tuple[str, ...]
    offsets: tuple[int, ...]  # from the piece's start


def prompt_hash(body: dict) -> str:
    what = body.get("messages", body.get("prompt"))
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def prompt_hashes(body: dict) -> list[str]:
    """One hash per prompt: a list of prompts counts each as if it had come alone."""
    prompts = body.get("prompt")
    if "messages" not in body and isinstance(prompts, list):
        return [prompt_hash({"prompt": p}) for p in prompts]
    return [prompt_hash(body)]


def _default_digit(token: str) -> int:
    return int(hashlib.md5(token.encode()).hexdigest(), 16) % 11


def _default_answer(endpoint: str, body: dict) -> str:
    return f"words about topic {prompt_hash(body)[:6]}"


_EXAMPLE_LINE = re.compile(r"^Example (\d+): (.*)$", re.MULTILINE)


def judge_answer(says_yes: Callable[[str], bool]) -> Callable[[str, dict], str]:
    """An `answer` hook for list judges (detection, fuzzing): reads the `Example i: ...` lines of the last
    message and answers `[1,0,...]`, 1 where `says_yes(example text)`."""

    def answer(endpoint: str, body: dict) -> str:
        content = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
        examples = _EXAMPLE_LINE.findall(content)
        return "[" + ",".join("1" if says_yes(text) else "0" for _, text in examples) + "]"

    return answer


@dataclass
class FakeOpenAI:
    """Behaviour and counters; change the fields between (or during) requests."""

    latency_s: float = 0.0
    failure_rate: float = 0.0
    failure_kinds: tuple[str, ...] = FAILURES
    script: list[str] = field(default_factory=list)  # outcomes consumed one per request, before failure_rate
    # (endpoint, body) -> an outcome for this request or None: fails requests by their content, which (unlike
    # the arrival order the script follows) does not depend on which of two concurrent requests comes first
    outcome_for: Callable[[str, dict], str | None] | None = None
    retry_after: str = "1"
    hang_s: float = 5.0
    seed: int = 0
    answer: Callable[[str, dict], str] = _default_answer  # (endpoint, body) -> answer text
    digit_for: Callable[[str], int] = _default_digit
    refuse_lists: bool = False  # a list of prompts gets HTTP 400, as from a server that takes one prompt
    ignore_logprobs: bool = False  # echo and logprobs ignored (transformers serve); chat answers without top logprobs
    split_digits: bool = False  # echoed prompts split digits apart; top logprobs offer "0".."9", never "10"
    list_status: int = 400  # how `refuse_lists` answers a list: 400 (transformers serve) or 500 (llama.cpp)
    zero_max_tokens: str = "echo"  # max_tokens=0: "echo" (vLLM), "unlimited" (llama.cpp), "refuse" (transformers serve)
    context_tokens: int = 2048  # where "unlimited" generation stops (prompt and answer together)
    max_concurrent: int | None = None  # at most this many requests served at once; the rest queue (vLLM's max-num-seqs)
    url: str = ""  # base URL ending in /v1, set once started
    requests: int = 0
    by_endpoint: Counter = field(default_factory=Counter)
    by_prompt: Counter = field(default_factory=Counter)  # per prompt: each prompt of a list counts
    list_requests: int = 0  # /v1/completions requests whose prompt was a list (refused ones included)
    prompts_per_request: list[int] = field(default_factory=list)  # /v1/completions, in arrival order
    by_outcome: Counter = field(default_factory=Counter)
    arrivals: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, outcome)
    authorization: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    prompt_tokens: int = 0  # as reported in the usage of the answers sent (the word tokenizer's count)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._fragments: dict[tuple, tuple[str, str, str]] = {}  # (digit_for, token, k) -> JSON texts
        self._pieces: dict[tuple, _Piece] = {}  # (digit_for, prompt piece, k) -> its tokens' JSON
        self._shared: dict[tuple, tuple] = {}  # the last request's shared prompt prefix -> its arrays
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._serving: asyncio.Semaphore | None = None  # made on the server's loop, for max_concurrent

    # --- behaviour -------------------------------------------------------------------------------------
    def _outcome(self, endpoint: str, body: dict) -> str:
        chosen = self.outcome_for(endpoint, body) if self.outcome_for else None
        if chosen is not None:
            if chosen not in OUTCOMES:
                raise ValueError(f"fake_openai outcome_for: unknown outcome {chosen!r}; use one of {OUTCOMES}")
            return chosen
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
        return dict([r for r in ranked if not self.split_digits or len(r[0]) == 1][: max(k, 1)])

    def _logprob(self, token: str) -> float:
        return -0.1 - (len(token.strip()) % 5) * 0.3

    def _chat_body(self, body: dict) -> dict:
        prompt = "\n\n".join(str(m.get("content", "")) for m in body["messages"])
        text = self._truncate(self.answer("chat", body), body.get("max_tokens"))
        out_tokens = [t for t, _ in tokenize(text)]
        choice: dict = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text},
                        "logprobs": None}
        if body.get("logprobs") and not self.ignore_logprobs:
            k = body.get("top_logprobs") or 0
            choice["logprobs"] = {"content": [
                {"token": t, "logprob": self._logprob(t), "bytes": None,
                 "top_logprobs": [{"token": a, "logprob": v, "bytes": None} for a, v in self._top(t, k).items()]}
                for t in out_tokens]}
        self.prompt_tokens += len(tokenize(prompt))
        return self._envelope("chat.completion", body, choice, len(tokenize(prompt)), len(out_tokens))

    def _completion_body(self, body: dict) -> dict:
        return json.loads(self._completion_json(body))

    def _fragments_of(self, token: str, k: int) -> tuple[str, str, str]:
        """The JSON texts of a token, its logprob and its top alternatives, cached: a benchmark's bodies repeat
        the same few thousand tokens, and building them must cost the server less than reading them costs the
        client."""
        key = (self.digit_for, token, k, self.split_digits)
        texts = self._fragments.get(key)
        if texts is None:
            texts = (json.dumps(token), json.dumps(self._logprob(token)),
                     json.dumps(self._top(token, k), separators=_COMPACT))
            self._fragments[key] = texts
        return texts

    def _piece(self, text: str, k: int) -> _Piece:
        key = (self.digit_for, text, k, self.split_digits)
        piece = self._pieces.get(key)
        if piece is None:
            toks = tokenize(text, self.split_digits)
            columns = [self._fragments_of(t, k) for t, _ in toks]
            token_list, logprob_list, top_list = (tuple(c[i] for c in columns) for i in range(3))
            piece = _Piece(",".join(token_list), ",".join(logprob_list), ",".join(top_list), token_list, logprob_list,
                           top_list, tuple(o for _, o in toks))
            self._pieces[key] = piece
        return piece

    def _text_arrays(self, text: str, k: int, start: int, first: bool) -> tuple[list[str], list[str], list[str], list[int]]:
        """Tokens, logprobs and top alternatives of `text` (at char `start` of its prompt) as JSON array
        segments, and its token offsets, built piece by piece; with `first`, its first token opens the prompt
        and has nothing to condition on (null)."""
        tokens, logprobs, tops, offsets = [], [], [], []
        for text_piece in _PIECE_END.split(text):
            piece = self._piece(text_piece, k)
            if first and piece.offsets:
                tokens.append(piece.tokens)
                logprobs.append(",".join(("null",) + piece.logprob_list[1:]))
                tops.append(",".join(("null",) + piece.top_list[1:]))
                first = False
            elif piece.offsets:
                tokens.append(piece.tokens)
                logprobs.append(piece.logprobs)
                tops.append(piece.tops)
            offsets.extend([start + o for o in piece.offsets])
            start += len(text_piece)
        return tokens, logprobs, tops, offsets

    def _prompt_arrays(self, prompt: str, k: int, shared: str) -> tuple[list[str], list[str], list[str], list[int]]:
        """The echoed prompt's arrays; `shared` (a prefix every prompt of the request starts with, ending on a
        piece boundary) is built once per request, as a server's prefix cache computes it once."""
        key = (self.digit_for, shared, k, self.split_digits)
        if key not in self._shared:
            self._shared = {key: self._text_arrays(shared, k, 0, True)}
        head = self._shared[key]
        tail = self._text_arrays(prompt[len(shared):], k, len(shared), not head[3])
        tokens, logprobs, tops, offsets = (h + t for h, t in zip(head, tail))
        return tokens, logprobs, tops, offsets

    def _choice_json(self, index: int, prompt: str, body: dict, shared: str = "") -> tuple[str, int, int]:
        """One choice's JSON text, and its prompt and completion token counts."""
        if body.get("max_tokens") == 0 and self.zero_max_tokens == "unlimited":  # llama.cpp: 0 is no limit
            text = " more" * max(self.context_tokens - len(tokenize(prompt, self.split_digits)), 0)
        else:
            text = self._truncate(self.answer("completions", {**body, "prompt": prompt}), body.get("max_tokens"))
        echo = bool(body.get("echo")) and not self.ignore_logprobs
        full = prompt + text if echo else text
        text_toks = tokenize(text)
        if body.get("logprobs") is None or self.ignore_logprobs:
            return json.dumps({"index": index, "finish_reason": "stop", "text": full, "logprobs": None},
                              separators=_COMPACT), len(tokenize(prompt)), len(text_toks)
        k = body["logprobs"]
        # prompt and answer are tokenised apart, as a server does: no token straddles the boundary
        tokens, logprobs, tops, offsets = self._prompt_arrays(prompt, k, shared) if echo else ([], [], [], [])
        counts = len(offsets) if echo else len(tokenize(prompt)), len(text_toks)
        if text_toks:
            answer = [self._fragments_of(t, k) for t, _ in text_toks]
            if echo and not offsets:  # an empty prompt echoed: the answer's first token has nothing before it
                answer[0] = (answer[0][0], "null", "null")
            tokens.append(",".join(a[0] for a in answer))
            logprobs.append(",".join(a[1] for a in answer))
            tops.append(",".join(a[2] for a in answer))
            offsets.extend(o + len(prompt) * echo for _, o in text_toks)
        return (f'{{"index":{index},"finish_reason":"stop","text":{json.dumps(full)},"logprobs":'
                f'{{"tokens":[{",".join(tokens)}],"token_logprobs":[{",".join(logprobs)}],'
                f'"top_logprobs":[{",".join(tops)}],"text_offset":{json.dumps(offsets, separators=_COMPACT)}}}}}'
                ), *counts

    def _completion_json(self, body: dict) -> str:
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        shared = _shared_prefix(prompts)
        choices = [self._choice_json(i, p, body, shared) for i, p in enumerate(prompts)]
        n_prompt, n_completion = sum(c[1] for c in choices), sum(c[2] for c in choices)
        self.prompt_tokens += n_prompt
        envelope = json.dumps(self._envelope("text_completion", body, {}, n_prompt, n_completion), separators=_COMPACT)
        return envelope.replace('"choices":[{}]', f'"choices":[{",".join(c[0] for c in choices)}]', 1)

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
        outcome = self._outcome(endpoint, body)
        listed = endpoint == "completions" and isinstance(body.get("prompt"), list)
        self.requests += 1
        self.by_endpoint[endpoint] += 1
        self.by_prompt.update(prompt_hashes(body))
        if endpoint == "completions":
            self.list_requests += listed
            self.prompts_per_request.append(len(body["prompt"]) if listed else 1)
        self.by_outcome[outcome] += 1
        self.arrivals.append((time.monotonic(), outcome))
        self.authorization.append(request.headers.get("authorization", ""))
        if self.max_concurrent and self._serving is None:
            self._serving = asyncio.Semaphore(self.max_concurrent)
        if self._serving is not None:
            await self._serving.acquire()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            if outcome == "429":
                return JSONResponse({"error": {"message": "rate limited", "type": "rate_limit_error"}},
                                    status_code=429, headers={"Retry-After": self.retry_after})
            if outcome == "404":
                return JSONResponse({"error": {"message": f"The model `{body.get('model')}` does not exist",
                                               "type": "invalid_request_error", "code": "model_not_found"}},
                                    status_code=404)
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
            if listed and self.refuse_lists:  # what transformers serve (400) or llama.cpp's server (500) answers
                return JSONResponse({"detail": "prompt must be a string."} if self.list_status == 400 else
                                    {"error": {"message": "", "type": "internal_server_error"}},
                                    status_code=self.list_status)
            if endpoint == "completions" and body.get("max_tokens") == 0 and self.zero_max_tokens == "refuse":
                return JSONResponse({"detail": "`max_new_tokens` must be greater than 0, but is 0."}, status_code=400)
            if endpoint == "chat":
                return JSONResponse(self._chat_body(body))
            return Response(self._completion_json(body), media_type="application/json")
        finally:
            self.in_flight -= 1
            if self._serving is not None:
                self._serving.release()

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
    parser.add_argument("--failure-kinds", default=",".join(FAILURES),
                        help=f"comma-separated outcomes failures are drawn from ({','.join(FAILURES)})")
    parser.add_argument("--max-concurrent", type=int, default=None, help="serve at most this many requests at once")
    parser.add_argument("--refuse-lists", action="store_true", help="answer a list of prompts with HTTP 400")
    parser.add_argument("--ignore-logprobs", action="store_true", help="ignore echo and logprobs on /v1/completions")
    parser.add_argument("--split-digits", action="store_true", help="a tokenizer with no \"10\" token (digits apart)")
    parser.add_argument("--list-status", type=int, default=400, help="the status --refuse-lists answers (400 or 500)")
    parser.add_argument("--zero-max-tokens", choices=("echo", "unlimited", "refuse"), default="echo",
                        help="what max_tokens=0 means (vLLM, llama.cpp, transformers serve)")
    args = parser.parse_args(argv)
    fake = FakeOpenAI(latency_s=args.latency, failure_rate=args.failure_rate, retry_after="0",
                      failure_kinds=tuple(args.failure_kinds.split(",")), max_concurrent=args.max_concurrent,
                      refuse_lists=args.refuse_lists, ignore_logprobs=args.ignore_logprobs,
                      split_digits=args.split_digits, list_status=args.list_status,
                      zero_max_tokens=args.zero_max_tokens)
    server, sock = fake._server_and_socket(args.port)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
