"""Known-answer rules for planted features, and a rule-following LLM for the fake OpenAI server.

A rule says which tokens a concept covers. The planted features' activations follow their rule, and the fake
LLM (an `answer` hook of `tests.fake_openai.FakeOpenAI`, served over real HTTP) reads the explanation in each
prompt, recognises the rule it names and applies that rule to the prompt's tokens: the json: simulator gets
10 on covered tokens and 0 elsewhere, the detection judge a 1 for an example holding a covered token, the
fuzzing judge a 1 for an example whose marked tokens are all covered, the intervention judge the continuation that
holds the word an explanation "the word X" names. An explanation naming no known rule gets seeded noise, so a scorer
that ignored the explanation would show it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

# The subject "tokenizer" of the planted records: words and punctuation, each with its leading space.
TOKEN = re.compile(r" ?\w+| ?[^\w\s]")
MONTHS = {"January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"}
SEASONS = {"spring", "summer", "autumn", "winter", "Spring", "Summer", "Autumn", "Winter"}


@dataclass(frozen=True)
class Rule:
    name: str
    keyword: str  # an explanation naming this rule contains this word (lowercased)
    covers: Callable[[str], bool]  # on a token's text without its leading space

    def __call__(self, token: str) -> bool:
        return self.covers(token.strip())


RULES = (
    Rule("digits", "digit", str.isdigit),
    Rule("punctuation", "punctuation", lambda t: bool(t) and all(not c.isalnum() for c in t)),
    Rule("capitalised", "capitalised", lambda t: t[:1].isupper() and t.isalpha()),
    Rule("lowercase", "lowercase", lambda t: t[:1].islower() and t.isalpha()),
    Rule("months", "months", lambda t: t in MONTHS),
    Rule("seasons", "seasons", lambda t: t in SEASONS),
)
RULE = {rule.name: rule for rule in RULES}


def rule_named_in(explanation: str) -> Rule | None:
    """The rule an explanation names, by its keyword; None for an explanation naming none (or several)."""
    text = explanation.lower()
    named = [rule for rule in RULES if rule.keyword in text]
    return named[0] if len(named) == 1 else None


def tokens_of(text: str) -> list[str]:
    return TOKEN.findall(text)


def _noise(text: str) -> int:
    """A value 0..10 fixed by `text`: what the fake answers where no rule is named."""
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % 11


# --- the simulator (json:) -------------------------------------------------------------------------------

_EXPLANATION = re.compile(r"the main thing this neuron does is find (.*)\n")
_TOKENS = re.compile(r"Tokens \(a JSON list\):\n(.*)\n\nReply", re.DOTALL)


def simulation_answer(content: str) -> str:
    """The json: simulator's reply: `[[token, value], ...]`, 10 where the named rule covers the token."""
    explanation = _EXPLANATION.search(content)
    tokens = _TOKENS.search(content)
    if explanation is None or tokens is None:
        raise ValueError(f"not a json: simulator prompt: {content[:120]!r}")
    rule = rule_named_in(explanation.group(1))
    values = [(10 if rule(t) else 0) if rule else _noise(explanation.group(1) + t)
              for t in json.loads(tokens.group(1))]
    return json.dumps([[t, v] for t, v in zip(json.loads(tokens.group(1)), values)], ensure_ascii=False)


# --- the judges (detection, fuzzing) ---------------------------------------------------------------------

_JUDGE_EXPLANATION = re.compile(r"^A neuron's explanation: (.*)$", re.MULTILINE)
_EXAMPLE = re.compile(r"^Example \d+: (.*)$", re.MULTILINE)
_MARKED = re.compile(r"<<(.*?)>>")


def _judges_yes(rule: Rule, example: str, fuzzing: bool) -> bool:
    if fuzzing:
        marked = _MARKED.findall(example)
        return bool(marked) and all(rule(t) for t in marked)
    return any(rule(t) for t in tokens_of(example))


def judge_answer(content: str) -> str:
    """The judge's list `[1,0,...]`: per example, whether the named rule holds (noise for an unknown rule)."""
    explanation = _JUDGE_EXPLANATION.search(content)
    if explanation is None:
        raise ValueError(f"not a judge prompt: {content[:120]!r}")
    rule = rule_named_in(explanation.group(1))
    fuzzing = "marked <<like this>>" in content
    answers = [int(_judges_yes(rule, e, fuzzing)) if rule else _noise(explanation.group(1) + e) % 2
               for e in _EXAMPLE.findall(content)]
    return "[" + ",".join(map(str, answers)) + "]"


# --- the intervention judge --------------------------------------------------------------------------------

_NAMED_WORD = re.compile(r"\bthe word (\w+)", re.IGNORECASE)
_CONTINUATION = re.compile(r"^Continuation \d+: (.*)$", re.MULTILINE)
INTERVENTION_QUESTION = "Which continuation had the neuron turned up"


def intervention_answer(content: str) -> str:
    """The intervention judge's pick: where the explanation says "the word X" and exactly one continuation holds
    X, that one's number; otherwise a number fixed by the prompt's hash (a guess, the same for the same prompt)."""
    explanation = _JUDGE_EXPLANATION.search(content)
    continuations = _CONTINUATION.findall(content)
    if explanation is None or not continuations:
        raise ValueError(f"not an intervention judge prompt: {content[:120]!r}")
    named = _NAMED_WORD.search(explanation.group(1))
    holding = [i for i, c in enumerate(continuations, 1)
               if named and named.group(1).lower() in (t.strip().lower() for t in tokens_of(c))]
    if len(holding) == 1:
        return f"Continuation {holding[0]}"
    return str(int(hashlib.sha256(content.encode()).hexdigest(), 16) % len(continuations) + 1)


def rule_following_answer(endpoint: str, body: dict) -> str:
    """FakeOpenAI's `answer` hook: a json: simulation, a judge's list or an intervention pick, by the prompt."""
    if endpoint != "chat":
        raise ValueError("the rule-following LLM answers chat requests only (simulate with json:)")
    content = body["messages"][-1]["content"]
    if INTERVENTION_QUESTION in content:
        return intervention_answer(content)
    return judge_answer(content) if "Write only the list." in content else simulation_answer(content)


def value_digit(token: str) -> int:
    """FakeOpenAI's `digit_for`: the top logprobs at an answer's value token peak at that value, so the
    expected values (and the judges' P(1)) follow the stated answers."""
    text = token.strip()
    return min(int(text), 10) if text.isdigit() else 0
