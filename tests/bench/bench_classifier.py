"""Benchmark of the task classifier against a trivial baseline, measured in one run.

    python tests/bench/bench_classifier.py [--quick]

Times `classify` on a corpus of ~30 varied conversations (small talk, code,
stack traces, reasoning, summaries, translations, a follow-up that reads the
history, a 1 MB message) and prints the mean and p99 microseconds per prompt,
for the typical prompts (under 4 KB) and for all of them. As a baseline, the
same run times `str.lower()` plus one precompiled regex search over the same
last user messages, and prints the ratio.

Target: well under 100 µs a typical prompt (a few hundred characters) on a slow
2 GHz core.
"""

from __future__ import annotations

import argparse
import collections
import gc
import platform
import re
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Final

from actors.failover.classifier import classify
from actors.models import ChatMessage

ROUNDS: Final = 2_000
QUICK_ROUNDS: Final = 200
TYPICAL_MAX_CHARS: Final = 4_096
TARGET_US: Final = 100.0
P99: Final = 0.99
MEGABYTE_CHARS: Final = 1_000_000
NS_PER_US: Final = 1_000

BASELINE_RE: Final = re.compile(r"```|traceback|step by step|summari[sz]e|translate")


def user(text: str) -> tuple[ChatMessage, ...]:
    return (ChatMessage(role="user", content=text),)


PROSE: Final = "The quarterly numbers improved across all regions, led by strong retail sales. "

CORPUS: Final[tuple[tuple[ChatMessage, ...], ...]] = (
    # small talk
    user("Hi! How are you doing today?"),
    user("Thanks a lot, that was really helpful!"),
    user("What's your favorite movie and why do you like it?"),
    user("Good morning! Any plans for the weekend? I was thinking of going hiking."),
    user("What is the capital of Australia?"),
    user(
        "I just got back from two weeks in Portugal and honestly I miss it already. The food, "
        "the light in Lisbon in the evening, the trams. Have you got suggestions for where I "
        "should go next spring if I liked that trip?"
    ),
    user("ok"),
    # code
    user("```python\ndef add(a, b):\n    return a + b\n```\nWhy does this return None sometimes?"),
    user(
        'Traceback (most recent call last):\n  File "/srv/app/main.py", line 42, in <module>\n'
        '    run()\n  File "/srv/app/main.py", line 17, in run\n    cfg = load(path)\n'
        "KeyError: 'user'\nWhat does this mean and how do I fix it?"
    ),
    user(
        'Exception in thread "main" java.lang.NullPointerException\n'
        "\tat com.example.App.process(App.java:31)\n\tat com.example.App.main(App.java:14)"
    ),
    user(
        "const total = items.reduce((acc, x) => acc + x.price, 0); returns NaN when the cart "
        "is empty, what's wrong?"
    ),
    user(
        "SELECT name, COUNT(*) FROM users GROUP BY name is slow on postgres with 10M rows, "
        "how can I speed it up? I already have an index on name."
    ),
    user("There's a bug in utils.ts where the date parser ignores the timezone offset."),
    user("Write a Python function that checks whether a string is a palindrome."),
    user(
        "I'm reviewing a pull request that moves our session cache from a module-level dict "
        "to Redis. The author added retries around every call but no timeout, and the tests "
        "mock the client entirely. What should I ask them to change before I approve it, and "
        "is there a risk that the retries hide real outages from our alerting?"
    ),
    user("pip install fails with a permission error on my Mac, how do I fix it?"),
    # reasoning
    user("Prove that the square root of 2 is irrational."),
    user(
        "Solve step by step: a train leaves at 3pm at 60 km/h, another leaves the same station "
        "at 4pm at 80 km/h. When does the second train catch up with the first?"
    ),
    user("Calculate 17 * 23 + 4 and explain your reasoning."),
    user("Find the derivative of f(x) = x^3 - 2x and the points where it is zero."),
    user("What is the probability of rolling two sixes with two dice?"),
    # summarize
    user("Summarize this article in three bullet points: " + PROSE * 4),
    user("tl;dr please: we met with the vendor, they can't deliver until March, so we slip."),
    user("Give me the key points of this meeting transcript. " + PROSE * 2),
    # translate
    user("Translate 'where is the train station?' into French."),
    user("How do you say 'thank you very much' in Japanese?"),
    user("Please translate the following paragraph to Spanish: " + PROSE * 2),
    # ambiguous / follow-up
    user("Translate this Python function into JavaScript"),
    (
        ChatMessage(role="user", content="Here is my code:\n```py\nxs = [1, 2]\nprint(xs[3])\n```"),
        ChatMessage(role="assistant", content="You index past the end of the list."),
        ChatMessage(role="user", content="ok, and what about this one?"),
    ),
    # a long prompt just under the scan windows, and a 1 MB one
    user("Please review this report. " + PROSE * 90),
    user("Summarize this log:\n" + "lorem ipsum dolor sit amet " * (MEGABYTE_CHARS // 27)),
)


def last_user_text(messages: Sequence[ChatMessage]) -> str:
    return next(m.content for m in reversed(messages) if m.role == "user")


def baseline(messages: Sequence[ChatMessage]) -> object:
    return BASELINE_RE.search(last_user_text(messages).lower())


def measure(fn: Callable[[Sequence[ChatMessage]], object], rounds: int) -> dict[int, list[float]]:
    """Per corpus index, the microseconds of each call."""
    samples: dict[int, list[float]] = collections.defaultdict(list)
    clock = time.perf_counter_ns
    for index, messages in enumerate(CORPUS):  # warm up
        fn(messages)
        samples[index] = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(rounds):
            for index, messages in enumerate(CORPUS):
                start = clock()
                fn(messages)
                samples[index].append((clock() - start) / NS_PER_US)
    finally:
        gc.enable()
    return samples


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(P99 * len(ordered)))]


def summary(samples: dict[int, list[float]], indices: list[int]) -> tuple[float, float]:
    values = [v for i in indices for v in samples[i]]
    return statistics.fmean(values), p99(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROUNDS} rounds")
    args = parser.parse_args()
    rounds = QUICK_ROUNDS if args.quick else ROUNDS

    sizes = [len(last_user_text(m)) for m in CORPUS]
    typical = [i for i, size in enumerate(sizes) if size < TYPICAL_MAX_CHARS]
    huge = [i for i, size in enumerate(sizes) if size >= MEGABYTE_CHARS]
    everything = list(range(len(CORPUS)))
    labels = collections.Counter(str(classify(m).label) for m in CORPUS)

    print(f"python {platform.python_version()} on {platform.machine()}, {rounds} rounds")
    print(
        f"corpus: {len(CORPUS)} prompts, {len(typical)} typical (median "
        f"{statistics.median(sizes[i] for i in typical):.0f} chars), {len(huge)} of 1 MB; "
        f"verdicts {dict(sorted(labels.items()))}"
    )
    ours = measure(classify, rounds)
    base = measure(baseline, rounds)

    print(f"{'':34}{'mean µs':>10}{'p99 µs':>10}")
    rows = (("typical prompts", typical), ("1 MB prompt", huge), ("all prompts", everything))
    for name, indices in rows:
        mean, tail = summary(ours, indices)
        base_mean, base_tail = summary(base, indices)
        print(f"classify, {name:<24}{mean:>10.1f}{tail:>10.1f}")
        print(f"baseline, {name:<24}{base_mean:>10.1f}{base_tail:>10.1f}")
        print(f"ratio classify/baseline{'':11}{mean / base_mean:>10.1f}x")
    typical_mean, typical_tail = summary(ours, typical)
    verdict = "OK" if typical_tail < TARGET_US else "MISSED"
    print(
        f"target: well under {TARGET_US:.0f} µs a prompt (typical prompts, slow 2 GHz core): "
        f"mean {typical_mean:.1f} µs, p99 {typical_tail:.1f} µs here -> {verdict}"
    )
    print("baseline = str.lower() + one precompiled regex search of the last user message")


if __name__ == "__main__":
    main()
