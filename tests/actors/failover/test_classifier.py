"""The task classifier: realistic prompts per label, abstentions, long context,
history follow-ups, bounded scanning of huge messages, determinism."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from actors.failover.classifier import (
    DEFAULT_LONG_CONTEXT_CHARS,
    LABELS,
    NO_SIGNAL_REASON,
    SCAN_HEAD_CHARS,
    SCAN_TAIL_CHARS,
    TaskClassifier,
    classify,
)
from actors.models import ChatMessage, Classification

REPO = Path(__file__).resolve().parents[3]


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def convo(*turns: tuple[str, str]) -> list[ChatMessage]:
    return [ChatMessage(role=role, content=text) for role, text in turns]


# (prompt, expected label, a reason that must be among the reasons)
LABELLED: list[tuple[str, str, str]] = [
    # chat
    ("Hi! How are you doing today?", "chat", "keyword 'how are you'"),
    ("hello there", "chat", "keyword 'hello'"),
    ("Thanks a lot, that was really helpful!", "chat", "keyword 'thanks'"),
    ("Good morning! Any plans for the weekend?", "chat", "keyword 'good morning'"),
    ("Tell me a joke about cats.", "chat", "keyword 'tell me a joke'"),
    ("What's your favorite movie?", "chat", "keyword 'favorite'"),
    ("What\u2019s up?", "chat", "keyword 'what's up'"),
    ("What is the capital of France?", "chat", "short message without task signals"),
    ("Who won the world cup in 2018?", "chat", "short message without task signals"),
    (
        "Can you recommend a good book to read on vacation?",
        "chat",
        "short message without task signals",
    ),
    # code
    (
        "```python\ndef add(a, b):\n    return a + b\n```\nWhy does this return None sometimes?",
        "code",
        "fenced code block",
    ),
    (
        'Traceback (most recent call last):\n  File "app.py", line 12, in <module>\n'
        "    main()\nKeyError: 'user'",
        "code",
        "stack trace",
    ),
    (
        'Exception in thread "main" java.lang.NullPointerException\n'
        "\tat com.example.App.main(App.java:14)",
        "code",
        "stack trace",
    ),
    (
        "TypeError: Cannot read properties of undefined (reading 'map')\n"
        "    at render (/app/src/List.jsx:12:20)\n    at main (/app/src/index.js:3:1)",
        "code",
        "stack trace",
    ),
    (
        "thread 'main' panicked at 'index out of bounds: the len is 3 but the index is 5', "
        "src/main.rs:4:5",
        "code",
        "stack trace",
    ),
    ("I keep getting a ValueError when I parse the config.", "code", "error name"),
    (
        "How do I reverse a linked list in Python? I tried def reverse(head): but it loops forever.",
        "code",
        "function definition",
    ),
    (
        "const total = items.reduce((acc, x) => acc + x.price, 0); returns NaN, what's wrong?",
        "code",
        "function definition",
    ),
    (
        "Refactor this class to use dependency injection: class UserService(Base): ...",
        "code",
        "class definition",
    ),
    (
        "import numpy as np\nimport pandas as pd\nhow do I merge two dataframes on a column?",
        "code",
        "import statement",
    ),
    (
        '#include <stdio.h>\nint main() { printf("hi"); }\nwhy does gcc warn here?',
        "code",
        "import statement",
    ),
    (
        "SELECT name, COUNT(*) FROM users GROUP BY name is slow on postgres, how can I speed it up?",
        "code",
        "SQL query",
    ),
    (
        "There's a bug in utils.ts where the date parser ignores the timezone.",
        "code",
        "source file name",
    ),
    (
        "pip install fails with a permission error on my Mac, how do I fix it?",
        "code",
        "shell command",
    ),
    ("Write a regex that matches email addresses.", "code", "keyword 'regex'"),
    ("My C++ code doesn't compile, the linker complains.", "code", "keyword 'compile'"),
    (
        "Write a Python function that checks whether a string is a palindrome.",
        "code",
        "keyword 'python'",
    ),
    (
        "Can you write a bash script that backs up my home directory every night?",
        "code",
        "keyword 'script'",
    ),
    # reasoning
    ("Prove that the square root of 2 is irrational.", "reasoning", "keyword 'prove that'"),
    (
        "Solve step by step: a train leaves at 3pm at 60 km/h, another at 4pm at 80 km/h. "
        "When does the second catch up?",
        "reasoning",
        "keyword 'step by step'",
    ),
    ("Explain your answer step-by-step, please.", "reasoning", "keyword 'step by step'"),
    ("Calculate 17 * 23 + 4.", "reasoning", "math expression"),
    ("If 2x + 3 = 11, what is x?", "reasoning", "math expression"),
    ("Find the derivative of f(x) = x^3 - 2x.", "reasoning", "math notation"),
    ("Show that ∑ 1/n² converges.", "reasoning", "math notation"),
    ("Derive the formula for the sum of a geometric series.", "reasoning", "keyword 'derive'"),
    (
        "Three boxes are all labelled wrongly: apples, oranges, mixed. You may take one fruit "
        "from one box. How do you relabel them? It's a logic puzzle.",
        "reasoning",
        "keyword 'logic puzzle'",
    ),
    (
        "What is the probability of rolling two sixes with two dice?",
        "reasoning",
        "keyword 'probability'",
    ),
    ("Why does the harmonic series diverge? Explain step by step.", "reasoning", "keyword 'why'"),
    # summarize
    (
        "Summarize this article in three bullet points: The city council voted on Tuesday "
        "to expand the bike lane network...",
        "summarize",
        "keyword 'summarize'",
    ),
    (
        "tl;dr please: we met with the vendor, they can't deliver until March, so the launch slips.",
        "summarize",
        "keyword 'tl;dr'",
    ),
    (
        "Can you give me the key points of this meeting transcript? Alice: we need to cut costs.",
        "summarize",
        "keyword 'key points'",
    ),
    (
        "Please write a short summary of the following email thread.",
        "summarize",
        "keyword 'summary'",
    ),
    ("Give me a recap of what we discussed so far.", "summarize", "keyword 'recap'"),
    ("Summarise the plot of Hamlet.", "summarize", "keyword 'summarise'"),
    # translate
    ("Translate 'where is the train station?' into French.", "translate", "keyword 'into french'"),
    ("How do you say 'thank you very much' in Japanese?", "translate", "keyword 'how do you say'"),
    (
        "Please translate the following paragraph to Spanish: We are pleased to announce our new office.",
        "translate",
        "keyword 'translate'",
    ),
    ("What does 'Schadenfreude' mean in English?", "translate", "keyword 'in english'"),
    (
        "Traduis ce texte en anglais : Bonjour, je m'appelle Marie.",
        "translate",
        "keyword 'traduis'",
    ),
    ("¿Cómo se dice 'hello' en inglés?", "translate", "keyword 'cómo se dice'"),
    (
        "Can you put this sentence into German: the meeting is postponed to Friday.",
        "translate",
        "keyword 'into german'",
    ),
]

ABSTAINING: list[str] = [
    "",
    "   \n\t ",
    "ok",
    "hmm",
    "?",
    "python",  # a single ambiguous word
    "why",  # too weak on its own
    "Why is the sky blue?",  # one weak signal
    # two labels tie (translate 3, code 3): better the default than a guess
    "Translate this Python function into JavaScript",
]


@pytest.mark.parametrize(("prompt", "label", "reason"), LABELLED)
def test_realistic_prompts_get_their_label_and_reason(prompt: str, label: str, reason: str) -> None:
    result = classify(user(prompt))
    assert result.label == label, result
    assert reason in result.reasons, result


def test_the_table_covers_every_label_but_long_context() -> None:
    assert {label for _, label, _ in LABELLED} == set(LABELS) - {"long_context"}


def test_labels_include_the_tiers_the_supervisor_knows() -> None:
    assert {"chat", "code", "reasoning", "long_context", "summarize", "translate"} <= set(LABELS)
    assert len(set(LABELS)) == len(LABELS)


@pytest.mark.parametrize("prompt", ABSTAINING)
def test_weak_or_tied_signals_abstain(prompt: str) -> None:
    result = classify(user(prompt))
    assert result.label is None
    assert result.reasons[0] == NO_SIGNAL_REASON


def test_an_abstention_lists_the_weak_signals_it_saw() -> None:
    result = classify(user("Translate this Python function into JavaScript"))
    assert result == Classification(
        label=None,
        reasons=(
            NO_SIGNAL_REASON,
            "keyword 'translate'",
            "keyword 'function'",
            "keyword 'python'",
            "keyword 'javascript'",
        ),
    )


def test_no_messages_or_no_user_message_abstains() -> None:
    assert classify([]).label is None
    only_system = convo(("system", "You are terse."), ("assistant", "Hello! ```code```"))
    result = classify(only_system)
    assert result.label is None
    assert result.reasons == (NO_SIGNAL_REASON, "no user message")


def test_reasons_are_never_empty() -> None:
    prompts = [prompt for prompt, _, _ in LABELLED] + ABSTAINING
    for prompt in prompts:
        assert classify(user(prompt)).reasons, prompt
    assert classify([]).reasons
    assert classify(user("x" * (DEFAULT_LONG_CONTEXT_CHARS + 1))).reasons


def test_every_label_returned_is_a_known_label() -> None:
    for prompt, _, _ in LABELLED:
        assert classify(user(prompt)).label in LABELS


def test_a_signal_counts_once_however_often_it_occurs() -> None:
    # "bug" is weak (1): repeating it must not make it a clear code request.
    assert classify(user("bug bug bug bug bug")).label is None


def test_the_strongest_reasons_come_first() -> None:
    result = classify(user("```js\nfoo()\n```\nthis function has a bug"))
    assert result.label == "code"
    assert result.reasons[0] == "fenced code block"
    assert result.reasons.index("code syntax") < result.reasons.index("keyword 'bug'")


def test_only_the_last_user_message_decides_when_it_is_clear() -> None:
    messages = convo(
        ("user", "```py\nprint(1)\n```"),
        ("assistant", "It prints 1."),
        ("user", "Thanks, have a nice evening!"),
    )
    result = classify(messages)
    assert result.label == "chat"
    assert not any(reason.startswith("earlier message") for reason in result.reasons)


def test_a_trailing_assistant_message_is_not_the_request() -> None:
    messages = convo(
        ("user", "Translate 'good night' into Italian."), ("assistant", "def f(): pass")
    )
    assert classify(messages).label == "translate"


# --- long context ------------------------------------------------------------------


def test_long_context_threshold_just_below_and_above() -> None:
    classifier = TaskClassifier(long_context_chars=1_000)
    below = classifier.classify(user("a" * 1_000))
    above = classifier.classify(user("a" * 1_001))
    assert below.label != "long_context"
    assert above == Classification(
        label="long_context", reasons=("conversation of 1001 characters",)
    )


def test_long_context_default_threshold_counts_every_message() -> None:
    half = DEFAULT_LONG_CONTEXT_CHARS // 2
    at = convo(("system", "s" * half), ("user", "u" * (DEFAULT_LONG_CONTEXT_CHARS - half)))
    over = convo(("system", "s" * half), ("assistant", "a" * half), ("user", "hi, how are you?"))
    assert classify(at).label != "long_context"
    result = classify(over)
    assert result.label == "long_context"
    assert result.reasons[0] == f"conversation of {2 * half + 16} characters"


def test_long_context_wins_but_keeps_the_other_signal() -> None:
    report = "The quarterly numbers improved across all regions. " * 1_200
    result = classify(user("Summarize the key points of this report:\n" + report))
    assert result.label == "long_context"
    assert result.reasons[0].startswith("conversation of ")
    assert "keyword 'summarize'" in result.reasons
    assert "keyword 'key points'" in result.reasons


def test_long_context_without_a_user_message_is_still_long_context() -> None:
    result = classify(convo(("system", "x" * (DEFAULT_LONG_CONTEXT_CHARS + 1))))
    assert result.label == "long_context"


def test_a_huge_message_is_read_only_at_its_head_and_tail() -> None:
    megabyte = 1_000_000
    head = "Please summarize this log.\n"
    middle = '\n```\nTraceback (most recent call last):\n  File "x.py", line 1\n```\n'
    filler = "lorem ipsum dolor sit amet " * (megabyte // 54)
    text = head + filler + middle + filler
    assert len(text) > megabyte
    result = classify(user(text))
    assert result.label == "long_context"
    assert result.reasons[0] == f"conversation of {len(text)} characters"
    assert "keyword 'summarize'" in result.reasons
    # the code in the middle is beyond both scan windows, so it is not seen
    assert "stack trace" not in result.reasons
    assert "fenced code block" not in result.reasons


def test_a_huge_message_under_a_higher_threshold_is_classified_from_its_ends() -> None:
    classifier = TaskClassifier(long_context_chars=10_000_000)
    filler = "lorem ipsum dolor sit amet " * 40_000
    tail_question = "\nWhy does this fail? ```py\nraise ValueError()\n```"
    result = classifier.classify(user("Summarize this." + filler + tail_question))
    # "summarize" (head) is 3, the tail's code is more: both windows were read
    assert result.label == "code"
    assert "fenced code block" in result.reasons
    assert len(filler) > 10 * (SCAN_HEAD_CHARS + SCAN_TAIL_CHARS)
    just_middle = classifier.classify(user(filler + "```py\nx()\n```" + filler))
    assert just_middle.label is None


# --- history -----------------------------------------------------------------------


CODE_TURNS = (
    ("user", "Here is my code:\n```py\nxs = [1, 2]\nprint(xs[3])\n```"),
    ("assistant", "You index past the end of the list."),
)


def test_an_unclear_follow_up_takes_the_topic_of_earlier_turns() -> None:
    result = classify(convo(*CODE_TURNS, ("user", "ok, and what about this one?")))
    assert result.label == "code"
    assert "earlier message: fenced code block" in result.reasons


def test_a_weak_follow_up_signal_adds_to_the_earlier_ones() -> None:
    result = classify(convo(*CODE_TURNS, ("user", "and now in Rust?")))
    assert result.label == "code"
    assert result.reasons[0] == "keyword 'rust'"
    assert "earlier message: fenced code block" in result.reasons


def test_history_can_be_turned_off() -> None:
    classifier = TaskClassifier(history_chars=0)
    result = classifier.classify(convo(*CODE_TURNS, ("user", "ok, and what about this one?")))
    assert result == Classification(label="chat", reasons=("short message without task signals",))


def test_history_skips_system_messages_and_respects_its_budget() -> None:
    system = convo(("system", "You are a coding assistant: ```"), ("user", "hmm"))
    assert classify(system).label is None
    far = convo(
        ("user", "```py\nprint(1)\n```" + " and more words" * 200),
        ("assistant", "Sure."),
        ("user", "hmm"),
    )
    assert TaskClassifier(history_chars=100).classify(far).label is None
    assert TaskClassifier(history_chars=10_000).classify(far).label == "code"


# --- construction, purity ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"long_context_chars": 0}, "long_context_chars must be at least 1"),
        ({"history_chars": -1}, "history_chars must be at least 0"),
    ],
)
def test_bad_thresholds_are_refused(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TaskClassifier(**kwargs)


def test_the_module_function_uses_the_default_thresholds() -> None:
    default = TaskClassifier()
    for prompt, _, _ in LABELLED:
        assert classify(user(prompt)) == default.classify(user(prompt))


def test_classification_is_deterministic_and_does_not_touch_its_input() -> None:
    messages = convo(*CODE_TURNS, ("user", "and now in Rust?"))
    before = list(messages)
    first = classify(messages)
    assert all(classify(messages) == first for _ in range(5))
    assert messages == before


def test_the_verdict_does_not_depend_on_the_hash_seed() -> None:
    # Signals are gathered through sets; their order must not leak into results.
    script = (
        "import json, sys\n"
        "from actors.failover.classifier import classify\n"
        "from actors.models import ChatMessage\n"
        "prompts = json.loads(sys.stdin.read())\n"
        "out = [classify([ChatMessage(role='user', content=p)]) for p in prompts]\n"
        "print(json.dumps([[c.label, list(c.reasons)] for c in out]))\n"
    )
    prompts = json.dumps([prompt for prompt, _, _ in LABELLED] + ABSTAINING)
    outputs = set()
    for seed in ("0", "1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", script],
            input=prompts,
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            check=True,
        )
        outputs.add(done.stdout)
    assert len(outputs) == 1


def test_every_detector_key_is_something_a_message_can_contain() -> None:
    # A key is looked up among the message's words or punctuation characters;
    # one that tokenizes differently (say "apt-get") would never gate anything.
    from actors.failover import classifier

    for detector in classifier._DETECTORS:
        assert detector.keys or detector.substrings or detector.non_ascii, detector
        for key in detector.keys:
            is_symbol = len(key) == 1 and not key.isalnum()
            assert is_symbol or classifier._words_of(key) == [key], key
