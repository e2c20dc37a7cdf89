"""Versioned prompt templates and few-shot examples. Change a text here, bump its version: stored
explanations name the version that produced them."""

from __future__ import annotations

from dataclasses import dataclass

from activations.vocab import Polarity

# v2 of every format: values scaled by the maximum of the records shown (v1: by the whole collection's maximum).
TAP_VERSION = "token-activation-pairs/v2"  # OpenAI's "Language models can explain neurons" format
HIGHLIGHT_VERSION = "highlight/v2"  # delphi-style inline <<highlights>>
SNIPPETS_VERSION = "snippets/v2"  # a document for base models to continue: marked snippets, then "Summary:"
# "auto" picks one of two formats per client, so its version names both: bumping either re-explains.
AUTO_VERSION = f"auto/v2[{TAP_VERSION}|{SNIPPETS_VERSION}]"
PROMPT_VERSIONS = {"token_activation_pairs": TAP_VERSION, "highlight": HIGHLIGHT_VERSION,
                   "snippets": SNIPPETS_VERSION, "auto": AUTO_VERSION}

# `--evidence activations+logits` adds the feature's logit lens (what it makes the model predict) to the
# prompt; the version then names that too, so such explanations never resume as activation-only ones.
# `--evidence activations+steering` adds the feature's stored steered continuations beside unsteered ones (what the
# model writes when the feature is turned up); both kinds of output-side evidence may be shown together.
EVIDENCE_CHOICES = ("activations", "activations+logits", "activations+steering", "activations+logits+steering")
LOGITS_VERSION = "logits/v1"
LOGITS_NOTE = ("Output effect (logit lens): when this neuron is active it makes the model more likely to predict "
               "next {raised}, and less likely {lowered}.")
STEERING_VERSION = "steer/v1"  # short: stored versions fit a 50-character column
STEERING_HEADER = {
    Polarity.POSITIVE: "Output effect (steering): when this neuron is turned up, the model writes the first text "
                       "below; normally it writes the second.",
    Polarity.NEGATIVE: "Output effect (steering): when this neuron is turned up (the opposite of the side explained "
                       "here), the model writes the first text below; normally it writes the second.",
}
STEERING_LINE = "After {prompt!r}: turned up, it writes {steered!r}; normally it writes {unsteered!r}."


def evidence_parts(evidence: str) -> tuple[bool, bool]:
    """(logit lens shown, steering shown) for an EVIDENCE_CHOICES value."""
    parts = evidence.split("+")
    return "logits" in parts, "steering" in parts


# `--explainer-mode contrastive`: the prompt also shows spans where the neuron stays quiet. Each format has its own
# contrastive version (not a suffix: stored versions must fit a 50-character column with evidence and sample).
TAP_CONTRASTIVE_VERSION = "tap-contrastive/v1"
HIGHLIGHT_CONTRASTIVE_VERSION = "highlight-contrastive/v1"
SNIPPETS_CONTRASTIVE_VERSION = "snippets-contrastive/v1"
CONTRASTIVE_VERSIONS = {"token_activation_pairs": TAP_CONTRASTIVE_VERSION, "highlight": HIGHLIGHT_CONTRASTIVE_VERSION,
                        "snippets": SNIPPETS_CONTRASTIVE_VERSION,
                        "auto": f"auto-contrastive/v1[{TAP_CONTRASTIVE_VERSION}|{SNIPPETS_CONTRASTIVE_VERSION}]"}
MODE_VERSIONS = {"plain": PROMPT_VERSIONS, "contrastive": CONTRASTIVE_VERSIONS}


def prompt_version(fmt: str, evidence: str = "activations", sample: str = "top", mode: str = "plain") -> str:
    """The stored prompt version of a format in an explainer mode, with the chosen evidence and explainer sample."""
    return versioned(MODE_VERSIONS[mode][fmt], evidence, sample)


def versioned(format_version: str, evidence: str, sample: str) -> str:
    """A format's version, plus the logit lens and steering when they are evidence, plus which records were shown
    (always: versions without it were made from the top records padded with the highest quantile records)."""
    logits, steering = evidence_parts(evidence)
    if logits and steering:  # both, in short ("logits1+steer1"): the longest version must fit its 50 characters
        return "+".join([format_version, f"{LOGITS_VERSION.replace('/v', '')}+{STEERING_VERSION.replace('/v', '')}",
                         sample])
    shown = [version for version, on in ((LOGITS_VERSION, logits), (STEERING_VERSION, steering)) if on]
    return "+".join([format_version, *shown, sample])


EXPLANATION_PREFIX = "the main thing this neuron does is find"
HIGHLIGHT_MARKER = "[EXPLANATION]:"

TAP_SYSTEM = (
    "We're studying neurons in a neural network. Each neuron looks for some particular thing in a short "
    "document. Look at the parts of the document the neuron activates for and summarize in a single sentence "
    "what the neuron is looking for. Don't list examples of words.\n\nThe activation format is "
    "token<tab>activation. Activation values range from 0 to 10. A neuron finding what it's looking for is "
    "represented by a non-zero activation value. The higher the activation value, the stronger the match."
)

HIGHLIGHT_SYSTEM = (
    "You are a meticulous AI researcher investigating patterns in language. You will be given text examples "
    "in which the tokens that matter are marked between delimiters like <<this>>; a run of consecutive "
    "important tokens is marked as one span <<just like this>>. When given, how strongly each marked token "
    "matters (0 to 10) is listed after the example in parentheses.\n"
    "- Describe in one short sentence the pattern common to the marked text, and the context it needs.\n"
    "- Don't list example words, don't mention the << >> markers, don't give several alternatives.\n"
    f"- The last line of your answer must be the explanation, starting with {HIGHLIGHT_MARKER}"
)

NEGATIVE_NOTE = (
    "\n\nThis time we study the negative side of the neuron: the values show how far each token pushes the "
    "neuron BELOW zero (its activations negated and scaled to 0..10). Explain what drives the neuron down."
)


@dataclass(frozen=True)
class FewShot:
    tokens: tuple[str, ...]
    activations: tuple[float, ...]
    explanation: str
    quiet: tuple[str, ...] = ()  # texts where it does not fire: the contrastive prompt's counterexamples


FEW_SHOTS: tuple[FewShot, ...] = (
    FewShot(
        tokens=("The", " painter", " mixed", " oil", " colors", " on", " his", " canvas", " before", " dawn", "."),
        activations=(0, 9, 1, 6, 8, 0, 0, 10, 0, 0, 0),
        explanation="words about painting and artists' materials",
        quiet=("The farmer mixed feed for the cows before dawn.", "He signed the contract at his desk."),
    ),
    FewShot(
        tokens=("She", " paid", " $", "15", " for", " the", " ticket", " and", " $", "3", ".", "50", " for", " snacks"),
        activations=(0, 0, 2, 10, 0, 0, 0, 0, 1, 9, 0, 7, 0, 0),
        explanation="amounts of money written after a dollar sign",
        quiet=("She counted 15 apples and 3 pears for the snacks", "The ticket office opens at 9."),
    ),
)


# --- snippets: base models (no chat template) continue a document instead of following instructions ---
# Base models copy whatever the prompt makes likely; a short document whose pattern ends in an open
# "Summary: Neuron C fires on" gets a content answer where instruction prompts get the first few-shot back.
SNIPPETS_HEADER = {
    Polarity.POSITIVE: "A list of text snippets where one neuron of a language model fires. The token where it fires "
                "is marked <<like this>>.",
    Polarity.NEGATIVE: "A list of text snippets where one neuron of a language model is pushed furthest below zero. "
                "The token where that happens is marked <<like this>>.",
}
SNIPPETS_VERB = {Polarity.POSITIVE: "fires on", Polarity.NEGATIVE: "is most negative on"}


@dataclass(frozen=True)
class SnippetShot:
    lines: tuple[str, ...]  # already marked, as the feature's snippets will be
    explanation: str
    quiet: tuple[str, ...] = ()  # where it does not fire: the contrastive document's counterexamples


SNIPPET_SHOTS: tuple[SnippetShot, ...] = (
    SnippetShot(("When we got to the shop I paid <<15>> dollars", "The author of the book was born in <<1999>> in",
                 "the farm had a total of <<42>> cats"), "numbers",
                ("When we got to the shop I paid with a card", "the farm had a lot of cats and")),
    SnippetShot(("She did not go to school <<because>> she was ill", "The match was cancelled <<because>> of the",
                 "He was angry <<because>> nobody had told him"), 'the word "because"',
                ("She did not go to school since she was ill", "The match was cancelled due to the")),
    SnippetShot(("We stayed inside all day because of the heavy <<rain>> and",
                 "By the evening the <<storm>> had reached the coast", "The roads were covered in <<snow>> for a week"),
                "words about the weather",
                ("We stayed inside all day because of the noise and", "By the evening the crowd had reached the")),
    SnippetShot(("We walked out into the garden and the sky was <<blue>> and",
                 "He drove down the street in a <<red>> car", "She took the old fence and painted it <<green>>."),
                "colour words",
                ("We walked out into the garden and the sky was clear and", "He drove down the street in a new car")),
)


# --- contrastive mode: counterexamples after the activating records (delphi's contrastive explainer) ---
CONTRAST_NOTE = {
    Polarity.POSITIVE: "\n\nAfter the examples where the neuron activates come counterexamples: text where it does NOT "
                       "activate (every activation 0), often text that a similar neuron fires on. The explanation must "
                       "fit the activating examples and not the counterexamples.",
    Polarity.NEGATIVE: "\n\nAfter the examples that push the neuron below zero come counterexamples: text where it is "
                       "NOT pushed below zero, often text that a similar neuron fires on. The explanation must fit the "
                       "examples and not the counterexamples.",
}
TAP_QUIET_HEADER = {Polarity.POSITIVE: "Texts where neuron {number} does not activate (every activation 0):",
                    Polarity.NEGATIVE: "Texts where neuron {number} is not pushed below zero (every value 0):"}
HIGHLIGHT_ACTIVE_HEADER = "ACTIVATING EXAMPLES:"
HIGHLIGHT_QUIET_HEADER = "NON-ACTIVATING EXAMPLES:"
SNIPPETS_QUIET_VERB = {Polarity.POSITIVE: "does not fire on", Polarity.NEGATIVE: "is not pushed below zero on"}
SNIPPETS_CONTRAST_HEADER = {
    Polarity.POSITIVE: "A list of text snippets where one neuron of a language model fires, and of snippets where it "
                       "does not. The token where it fires is marked <<like this>>.",
    Polarity.NEGATIVE: "A list of text snippets where one neuron of a language model is pushed furthest below zero, "
                       "and of snippets where it is not. The token where that happens is marked <<like this>>.",
}
