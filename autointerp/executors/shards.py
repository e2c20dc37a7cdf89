"""Cut a collection into shards: runs of consecutive windows (document ranges, a long document split at a
window boundary) that are exactly the windows one pass would make there, with the same global window ids
(so hashed sampler keys, and the records rebuilt by id, agree).

Planning tokenises the corpus once (no model), noting each window's document; a shard then re-reads only
its own documents. The token budget's cut (the last window, maybe truncated) falls in the last shard,
which gets exactly the tokens the single pass would have taken there.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from activations.collect_config import CollectConfig
from activations.corpus import Corpus, Document
from activations.errors import UserError
from activations.windows import Window, iter_windows


@dataclass(frozen=True)
class Shard:
    index: int
    doc_start: int  # position (in corpus order) of the document holding the shard's first window
    doc_end: int  # one past the document holding its last window
    skip: int  # windows of doc_start before the shard's first one (a long document may span shards)
    skip_tokens: int  # their tokens
    first_window: int  # global id of the shard's first window
    n_windows: int
    n_tokens: int  # scored tokens in the shard


def _numbered(corpus: Corpus) -> Corpus:
    """The corpus with each document's id replaced by its position (ids need not be unique)."""
    return Corpus(corpus.name, lambda: (Document(str(i), d.text) for i, d in enumerate(corpus.documents())))


def plan_shards(corpus: Corpus, tokenizer: Any, config: CollectConfig, n_shards: int) -> list[Shard]:
    """At most `n_shards` runs of consecutive windows with about equal token counts (fewer when there are
    fewer windows); together they hold exactly the windows of one pass."""
    if n_shards < 1:
        raise ValueError(f"--shards must be >= 1 (got {n_shards})")
    windows = [(int(w.document), len(w.token_ids)) for w in
               iter_windows(_numbered(corpus), tokenizer, config.ctx_len, config.max_tokens, config.min_tail)]
    if not windows:
        raise UserError(f"corpus {corpus.name} gives no window of at least {config.min_tail} tokens to collect")
    total = sum(n for _, n in windows)
    cuts: list[int] = []
    tokens = 0
    for i, (_, n) in enumerate(windows):
        tokens += n
        if tokens >= total * (len(cuts) + 1) / n_shards or i == len(windows) - 1:
            cuts.append(i + 1)
    shards: list[Shard] = []
    start = 0
    for end in cuts:
        doc = windows[start][0]
        before = [n for d, n in windows[:start] if d == doc]  # earlier windows of the same document
        shards.append(Shard(len(shards), doc, windows[end - 1][0] + 1, len(before), sum(before), start, end - start,
                            sum(n for _, n in windows[start:end])))
        start = end
    return shards


def shard_windows(corpus: Corpus, tokenizer: Any, config: CollectConfig, shard: Shard) -> Iterator[Window]:
    """The shard's windows, with their global ids."""
    documents = Corpus(corpus.name, lambda: itertools.islice(corpus.documents(), shard.doc_start, shard.doc_end))
    windows = iter_windows(documents, tokenizer, config.ctx_len, shard.skip_tokens + shard.n_tokens, config.min_tail)
    for window in itertools.islice(windows, shard.skip, shard.skip + shard.n_windows):
        yield dataclasses.replace(window, id=window.id - shard.skip + shard.first_window)
