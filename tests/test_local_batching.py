"""Batching across features in flight for the in-process models: the micro-batcher and the thread budget on
their own, then batched generation (gemma-3-270m, smollm2-135m) and batched embedding simulations checked
against the unbatched paths (`max_batch=1`)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
import torch

from llm_client import batching
from llm_client.base import Completion
from llm_client.batching import MicroBatcher, compute_slot, share_threads, spare_threads

# --- the micro-batcher and the thread budget (no model) -----------------------------------------------------


def _doubler(sizes: list[int]):
    def run(jobs: list[int]) -> list[int | BaseException]:
        sizes.append(len(jobs))
        time.sleep(0.01)
        return [ValueError(f"bad {j}") if j < 0 else 2 * j for j in jobs]

    return run


def test_jobs_in_flight_together_share_a_batch_up_to_the_maximum():
    sizes: list[int] = []
    batcher = MicroBatcher(_doubler(sizes), max_batch=4, idle_s=0.05)

    async def go():
        return await asyncio.gather(*(batcher.submit(i) for i in range(10)))

    assert asyncio.run(go()) == [2 * i for i in range(10)]
    assert sum(sizes) == 10 and max(sizes) == 4 and sizes[0] == 4


def test_a_failing_job_fails_alone_and_a_failing_batch_fails_all_its_jobs():
    batcher = MicroBatcher(_doubler([]), max_batch=8, idle_s=0.05)

    async def go():
        return await asyncio.gather(batcher.submit(1), batcher.submit(-1), batcher.submit(3), return_exceptions=True)

    ok, bad, ok2 = asyncio.run(go())
    assert (ok, ok2) == (2, 6) and isinstance(bad, ValueError) and "bad -1" in str(bad)

    def explode(jobs):
        raise RuntimeError("model fell over")

    broken = MicroBatcher(explode, max_batch=8, idle_s=0.05)

    async def go_broken():
        return await asyncio.gather(broken.submit(1), broken.submit(2), return_exceptions=True)

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(go_broken()))


def test_the_batcher_serves_successive_event_loops_and_lets_its_thread_go_when_idle():
    batcher = MicroBatcher(_doubler([]), max_batch=4, idle_s=0.05)
    assert asyncio.run(batcher.submit(1)) == 2
    assert asyncio.run(batcher.submit(5)) == 10  # a new loop, the same worker or a fresh one
    deadline = time.monotonic() + 5
    while batcher._thread is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert batcher._thread is None
    assert asyncio.run(batcher.submit(2)) == 4  # starts again on demand


def test_close_lets_the_running_batch_finish_fails_the_queued_jobs_and_joins_the_thread():
    # A model thread still inside torch when the interpreter exits aborts the process (exit 134): a run closes its
    # batchers on the way out, interrupted or not.
    started, release = threading.Event(), threading.Event()

    def slow(jobs):
        started.set()
        release.wait(10)
        return [2 * j for j in jobs]

    batcher = MicroBatcher(slow, max_batch=1, idle_s=30)

    async def go():
        running = asyncio.ensure_future(batcher.submit(1))
        await asyncio.to_thread(started.wait, 10)
        workers.append(batcher._thread)
        queued = [asyncio.ensure_future(batcher.submit(j)) for j in (2, 3)]
        await asyncio.sleep(0)  # both are on the queue now
        closing = asyncio.ensure_future(asyncio.to_thread(batcher.close))
        while not batcher._closing.is_set():
            await asyncio.sleep(0.01)
        release.set()
        await closing
        return await asyncio.gather(running, *queued, return_exceptions=True)

    workers: list = []
    done, *dropped = asyncio.run(go())
    assert done == 2
    assert all(isinstance(d, RuntimeError) and "closed before this job ran" in str(d) for d in dropped)
    assert batcher._thread is None and not workers[0].is_alive()
    assert asyncio.run(batcher.submit(4)) == 8  # a later job starts a new worker
    batcher.close()


def test_workers_split_the_thread_budget_and_restore_their_threads():
    deadline = time.monotonic() + 10
    while batching._alive and time.monotonic() < deadline:  # workers of earlier tests idling out
        time.sleep(0.05)
    assert batching._alive == 0
    batching.set_thread_budget(2)
    try:
        seen: dict[str, list] = {"a": [], "b": []}
        both_in = threading.Barrier(2)
        b_done = threading.Event()

        def worker(name: str) -> None:
            before = torch.get_num_threads()
            with compute_slot():
                both_in.wait()
                seen[name].append(share_threads())  # two workers alive: one thread each
                both_in.wait()
                if name == "b":
                    b_done.set()
                else:
                    b_done.wait()
                    time.sleep(0.05)
                    seen[name].append(share_threads())  # alone again: the whole budget
            seen[name].append(torch.get_num_threads() == before)

        threads = [threading.Thread(target=worker, args=(n,)) for n in "ab"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert seen["a"] == [1, 2, True] and seen["b"] == [1, True]
        assert share_threads() == torch.get_num_threads() and spare_threads() == 0  # outside any slot
    finally:
        batching.set_thread_budget(None)


# --- batched generation against the unbatched path ---------------------------------------------------------

TIE = 1e-3  # a greedy step whose top two logprobs are closer than this may go either way under float rounding


def _assert_same_generation(ref: Completion, got: Completion, what: str) -> None:
    """Greedy batched output equals the unbatched one; the only tolerated difference is a near-tie: at the
    first token where they part, the unbatched top two were within TIE (float rounding of padded batches)."""
    r, g = ref.generated_logprobs or [], got.generated_logprobs or []
    for k, (a, b) in enumerate(zip(r, g)):
        if a.token != b.token:
            top = sorted(a.top.values(), reverse=True)
            assert len(top) > 1 and top[0] - top[1] < TIE, f"{what}: step {k} picked {b.token!r} for {a.token!r}"
            return
        assert b.logprob == pytest.approx(a.logprob, abs=1e-3), f"{what}: step {k} logprob"
    assert got.text == ref.text, what
    assert got.usage.completion_tokens == ref.usage.completion_tokens, what


def _explainer_prompts(client) -> list[tuple[str, dict]]:
    """The prompts the explainer really sends (snippets format) for a few synthetic features."""
    from activations.records import ActivationRecord, FeatureId, FeatureRecords
    from explainer import explain

    words = "the cat sat on 3 mats in 1999 and 42 dogs ran past 7 red cars near the river bank today".split()
    features = []
    for f in range(4):
        records = []
        for r in range(4 + f):
            tokens = [(" " if i else "") + words[(3 * f + 5 * r + 7 * i) % len(words)] for i in range(10 + 3 * r)]
            acts = [2.0 + i % 3 if t.strip().isdigit() or i == r + f else 0.0 for i, t in enumerate(tokens)]
            records.append(ActivationRecord(tokens, acts, label=f"top[{r}]"))
        features.append(FeatureRecords(FeatureId("gemma-3-270m", 6, "mlp_neuron", f), records))
    sent: list[tuple[str, dict]] = []
    original = client.complete

    async def spy(prompt, **kw):
        sent.append((prompt, kw))
        return await original(prompt, **kw)

    client.complete = spy
    try:
        async def explain_all():  # the features in flight together, as a batch explains them
            await asyncio.gather(*(explain(client, f, max_tokens=24) for f in features))

        asyncio.run(explain_all())
    finally:
        del client.complete
    return sent


@pytest.mark.slow
def test_batched_greedy_generation_matches_unbatched_on_gemma():
    from llm_client.local_backend import LocalClient

    ref = LocalClient("gemma-3-270m", device="cpu", max_batch=1)
    bat = LocalClient("gemma-3-270m", device="cpu", max_batch=8)
    prompts = _explainer_prompts(ref)
    assert len(prompts) == 4 and all("stop" in kw for _, kw in prompts)
    # Prompts that share nothing with the explainer's and differ in length (their own group, no prefix).
    prompts += [("The capital of France is", {"max_tokens": 12}),
                ("Once upon a time, in a small village by the sea, there lived an old fisherman who", {"max_tokens": 12})]

    async def batched():
        return await asyncio.gather(*(bat.complete(p, logprobs=2, **kw) for p, kw in prompts))

    async def one_by_one(client, items):
        return [await client.complete(p, logprobs=2, **kw) for p, kw in items]

    got = asyncio.run(batched())
    ref_out = asyncio.run(one_by_one(ref, prompts))
    assert max(bat.batch_sizes) > 1 and bat._decoder.prefixes, "the explainer prompts should share a prefix in one batch"
    for i, (r, g) in enumerate(zip(ref_out, got)):
        _assert_same_generation(r, g, f"prompt {i}")
        assert r.usage.prompt_tokens == g.usage.prompt_tokens
    # Later requests reuse the kept prefix, alone or together.
    again = asyncio.run(one_by_one(bat, prompts[:2]))
    for i, (r, g) in enumerate(zip(ref_out, again)):
        _assert_same_generation(r, g, f"prompt {i} (kept prefix)")


@pytest.mark.slow
def test_batched_sampling_stops_and_zero_tokens_behave_as_unbatched():
    from llm_client.local_backend import LocalClient

    bat = LocalClient("gemma-3-270m", device="cpu", max_batch=8)
    prompt = "A short list of fruits:\n-"

    async def together():
        return await asyncio.gather(
            bat.complete(prompt, temperature=1.0, seed=7, max_tokens=10),
            bat.complete("The weather today is", max_tokens=20, stop=["\n", "."]),
            bat.complete("Count: one, two,", max_tokens=0),
            bat.complete("Count: one, two,", max_tokens=3),
        )

    async def alone():
        return await bat.complete(prompt, temperature=1.0, seed=7, max_tokens=10)

    sampled, stopped, empty, short = asyncio.run(together())
    assert max(bat.batch_sizes) > 1
    assert asyncio.run(alone()).text == sampled.text  # a seeded request gives its text in any batch
    assert "\n" not in stopped.text and "." not in stopped.text
    assert empty.text == "" and empty.usage.completion_tokens == 0
    assert 0 < short.usage.completion_tokens <= 3


@pytest.mark.slow
def test_batched_chat_matches_unbatched_on_smollm2():
    from llm_client.local_backend import LocalClient

    ref = LocalClient("smollm2-135m", device="cpu", max_batch=1)
    bat = LocalClient("smollm2-135m", device="cpu", max_batch=8)
    questions = ["Name a colour.", "What is two plus two?", "Say hello in French, please, in one word."]
    messages = [[{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": q}]
                for q in questions]

    async def batched():
        return await asyncio.gather(*(bat.chat(m, max_tokens=10, top_logprobs=2) for m in messages))

    got = asyncio.run(batched())
    ref_out = [asyncio.run(ref.chat(m, max_tokens=10, top_logprobs=2)) for m in messages]
    assert max(bat.batch_sizes) > 1
    for i, (r, g) in enumerate(zip(ref_out, got)):
        _assert_same_generation(r, g, f"chat {i}")


# --- batched embedding simulations against the unbatched path ----------------------------------------------

SENTENCES = [
    "The bridge is 120 metres long and was built in 1932 by 400 workers.",
    "The red car stopped next to the large wooden fence.",
    "A fox crept through the wheat field toward the farm.",
    "I have never seen anything like it, and I do not want to.",
    "The meeting moved from Monday morning to Friday evening.",
]
EXPLANATIONS = ["numbers and digits", "colour words such as red", "animals", "the word right after \"the\""]


def _records() -> list[list[str]]:
    return [[(" " if i else "") + w for i, w in enumerate(s.split())] for s in SENTENCES]


@pytest.fixture(scope="module")
def simulators():
    from simulator.embedding import EmbeddingSimulator

    return EmbeddingSimulator(device="cpu", max_batch=1), EmbeddingSimulator(device="cpu", max_batch=8)


@pytest.mark.slow
def test_batched_embedding_simulations_match_unbatched(simulators):
    from simulator.base import SimulationError

    plain, batched = simulators
    records = _records()

    async def together():
        jobs = [batched.simulate(e, records[i:] + records[:i]) for i, e in enumerate(EXPLANATIONS)]
        return await asyncio.gather(*jobs, batched.simulate("  ", records), return_exceptions=True)

    *got, bad = asyncio.run(together())
    assert isinstance(bad, SimulationError) and "empty" in bad.reason  # fails alone, the others go on
    assert max(batched.batch_sizes) > 1
    for i, (explanation, sims) in enumerate(zip(EXPLANATIONS, got)):
        ref = asyncio.run(plain.simulate(explanation, records[i:] + records[:i]))
        assert [s.tokens for s in sims] == [s.tokens for s in ref]
        for s, r in zip(sims, ref):
            np.testing.assert_allclose(s.expected_activations, r.expected_activations, atol=1e-4)


@pytest.mark.slow
def test_a_helper_stream_encodes_while_the_other_worker_idles(simulators):
    """With another model worker alive but idle, the embedding's spare thread runs a second encode stream
    (its own copy of the model); the vectors are those of the plain path."""
    from simulator import embedding

    plain, batched = simulators
    texts = [f"sentence number {i} about {w}" for i in range(3 * embedding.ENCODE_CHUNK // 2) for w in ["cats"]]
    batching.set_thread_budget(2)
    idle_worker_in, release = threading.Event(), threading.Event()

    def idle_worker():
        with compute_slot():
            idle_worker_in.set()
            release.wait()

    other = threading.Thread(target=idle_worker)
    other.start()
    try:
        idle_worker_in.wait()
        result: dict = {}

        def batch_worker():
            with compute_slot(), batching._running_batch():
                result["spare"] = spare_threads()
                result["vectors"] = batched.embed(texts)

        worker = threading.Thread(target=batch_worker)
        worker.start()
        worker.join()
    finally:
        release.set()
        other.join()
        batching.set_thread_budget(None)
    assert result["spare"] == 1 and batched._helper_model is not None
    np.testing.assert_allclose(result["vectors"], plain.embed(texts), atol=1e-5)
    asyncio.run(batched.aclose())
