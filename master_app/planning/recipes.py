"""Ready-made plans the local planner offers offline: tasks it recognises in plain words.

Each recipe turns a recognised phrase into plan fields; deterministic code (sharding)
does the splitting, and every piece of code here runs on a worker, never on the master.
"""

from __future__ import annotations

import re
from typing import Any

#: How many subtasks a "count the primes below N" plan is cut into.
PRIME_PARTS = 8

#: Counts the primes in [lo, hi): a segmented sieve of Eratosthenes (no imports but math).
PRIME_COUNT_CODE = """import math
lo, hi = INPUT
lo = max(lo, 2)
count = 0
if hi > lo:
    root = math.isqrt(hi - 1)
    base = bytearray([1]) * (root + 1)
    base[0:2] = b"\\x00\\x00"
    for i in range(2, math.isqrt(root) + 1):
        if base[i]:
            base[i * i::i] = bytes(len(range(i * i, root + 1, i)))
    seg = bytearray([1]) * (hi - lo)
    for p in range(2, root + 1):
        if base[p]:
            start = max(p * p, (lo + p - 1) // p * p)
            if start < hi:
                seg[start - lo::p] = bytes(len(range(start, hi, p)))
    count = seg.count(1)
RESULT = count
"""

_NUMBER = r"(\d[\d,_]*(?:\.\d+)?(?:e\d+)?)\s*(thousand|million|billion|k|m|bn)?\b"
_PRIMES = re.compile(
    r"^(?:please\s+)?(?:count|how many)\s+(?:are\s+)?(?:the\s+|of\s+the\s+)?prime"
    r"(?:s|\s+numbers)?\s+(?:are\s+there\s+)?(below|under|less\s+than|up\s+to|to|<=?)\s+"
    + _NUMBER, re.I)
_SCALE = {"thousand": 10**3, "k": 10**3, "million": 10**6, "m": 10**6, "billion": 10**9,
          "bn": 10**9}
_PRINTS = re.compile(r"\bprints?\s+(?:out\s+)?([\"'\u201c\u2018])(.+?)[\"'\u201d\u2019]\s*\.?$",
                     re.I | re.S)


def parse_number(digits: str, scale: str | None) -> int:
    """``"20"``, ``"million"`` → 20000000; ``"2e7"`` → 20000000; ``"1,000"`` → 1000."""
    value = float(digits.replace(",", "").replace("_", ""))
    return int(value * _SCALE.get((scale or "").lower(), 1))


def primes_plan(text: str) -> dict[str, Any] | None:
    """"count the primes below N": python over ``PRIME_PARTS`` ranges + a sum reducer."""
    m = _PRIMES.match(text.strip())
    if m is None:
        return None
    bound = parse_number(m.group(2), m.group(3))
    stop = bound + 1 if m.group(1).lower().replace(" ", "") in ("upto", "to", "<=") else bound
    if stop <= 2:
        raise ValueError(f"there are no primes below {stop}; give a bound above 2")
    parts = min(PRIME_PARTS, stop)
    return {"operation": "python",
            "params": {"code": PRIME_COUNT_CODE,
                       "span": {"start": 0, "stop": stop, "parts": parts}},
            "reduce": {"kind": "python", "code": "RESULT = sum(INPUT)",
                       "description": "add up the prime counts of the ranges"},
            "explanation": f"count the primes below {stop:,} with a sieve over {parts} "
                           "ranges, then add the counts up on a worker"}


def print_plan(text: str) -> dict[str, Any] | None:
    """"... a Python script that prints 'X'": one python subtask printing X."""
    m = _PRINTS.search(text.strip())
    if m is None or not re.search(r"\b(python|script|program|code)\b", text, re.I):
        return None
    message = m.group(2)
    return {"subtasks": [{"kind": "python", "code": f"print({message!r})",
                          "description": f"print {message!r}"}],
            "reduce": {"kind": "concat"},
            "explanation": f"one python subtask that prints {message!r}"}


#: Label words whose meaning is a sentiment, with sentences that say it (zero-shot
#: classify compares rows with these). On examples/reviews.txt (12 reviews, labelled by
#: hand) with MiniLM: these sentences 11/12, "The sentiment of this review is {label}."
#: 8/12, the generic "This is about a {label}." 9/12.
SENTIMENT_SENTENCES = {
    "positive": "This is great, I love it.",
    "negative": "This is bad, I hate it.",
    "neutral": "It is okay.",
    "mixed": "Some of it is good and some of it is bad.",
}


def is_sentiment(command: str, labels: list[str]) -> bool:
    """Whether a labelling task is about sentiment: it says so, or every label is a
    sentiment word."""
    words = {label.lower() for label in labels}
    return "sentiment" in command.lower() or (bool(words) and words <= set(SENTIMENT_SENTENCES))


def sentiment_descriptions(command: str, labels: list[str]) -> dict[str, str]:
    """A sentence per label: the known sentiment sentence, else "The sentiment of this
    {thing} is {label}." (thing from the command: review, ticket, ...; else text)."""
    m = re.search(r"\b(?:each|every|this|these|the)\s+([a-z]+?)s?\b(?:\s+as|\s+into|$)",
                  command, re.I)
    thing = m.group(1).lower() if m and m.group(1).lower() != "sentiment" else "text"
    return {label: SENTIMENT_SENTENCES.get(label.lower(),
                                           f"The sentiment of this {thing} is {label}.")
            for label in labels}
