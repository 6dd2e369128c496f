"""A cheap task classifier: labels a request so `auto` can pick a model tier.

The failover supervisor asks it what kind of work a conversation is when the
requested model is `auto`. It reads the last user message (and, only when that
message alone is unclear, the tail of the earlier turns), scores each label from
a fixed table of signals and returns the best one with the signals that fired as
`reasons`. It abstains (`label=None`) when nothing scores enough or two labels
tie; the caller then uses its default.

Labels and their signals (weights: strong 3, medium 2, weak 1):

* ``code``: fenced code blocks, stack traces (Python, Java, JS, Rust, Go),
  exception names (``ValueError``), code syntax (``def f(``, ``class Foo:``,
  ``=>``, lines ending in ``;`` or ``{``, ``===``, ``&&``), imports and
  ``#include``, SQL (``SELECT ... FROM`` in capitals), file names with source
  extensions, shell commands (``pip install``, ``git push``) and words such as
  "refactor", "regex", "compile" (medium), "bug", "function", "python" (weak).
* ``reasoning``: "step by step", "prove that" (strong), "prove", "derive",
  "calculate", "solve", "probability", "puzzle" (medium), "why", "logic"
  (weak), arithmetic (``17 * 23``), algebra (``x^2``, ``2x + 3 = 7``) and math
  notation (``∑``, ``\\frac``, ``f(x) =``).
* ``summarize``: "summarize", "tl;dr", "key points" (strong), "summary",
  "recap", "gist" (medium), "overview" (weak).
* ``translate``: "translate" (also in French, Spanish, German, Italian and
  Portuguese), "how do you say", "cómo se dice", "into <language>" (strong),
  "in <language>" (medium).
* ``chat``: greetings, thanks, small talk (medium), a few casual words (weak),
  and, as a fallback, a short message of a few words without any task signal
  (one that is not chat).
* ``long_context``: the whole conversation is longer than
  ``long_context_chars``. It wins over every other label, since the tier must
  have a big window, and keeps the other label's reasons after its own.

A label wins when its score reaches `MIN_WINNING_SCORE` and beats the runner-up
by at least `MIN_SCORE_MARGIN`; each signal counts once per message, however
often it occurs. When the last user message is unclear, up to `history_chars`
characters of the previous turns (newest first, system messages skipped) are
scanned too, so a follow-up such as "and now in Rust?" keeps the topic of the
conversation; those reasons read "earlier message: ...".

Cost: the regexes and tables are built at import. A regex only runs when a
cheap gate passed (a word of the message, a punctuation character, a
substring), so a typical prompt costs one `lower`, one `translate` + `split`, a
set intersection and a handful of searches: some 10-40 µs. Only the first and
last `SCAN_HEAD_CHARS`/`SCAN_TAIL_CHARS` of the last message are read, so the
cost is bounded however long the message is (a 1 MB message costs about what
8 KB do); the conversation size is a sum of `len`. A call allocates the
lower-cased window, its word list, a few small lists and the result; verdicts
without any signal are shared constants.

Limits: these are keyword heuristics, English-centred, meant to route, not to
understand. "Translate this Python function into JavaScript" ties translate
with code and abstains; "reply in English" counts as a translation hint; prose
that talks about code is ``code``; "in French cuisine" reads as a target
language; a math question in words only ("how many apples...") often abstains,
as does any question whose only signal is a weak one ("why is the sky blue?");
a topic switch right after a code conversation may inherit ``code`` from the
history; and a signal in the middle of a very long message is not seen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final, NamedTuple

from actors.models import ChatMessage, Classification

__all__ = [
    "DEFAULT_HISTORY_CHARS",
    "DEFAULT_LONG_CONTEXT_CHARS",
    "LABELS",
    "MIN_SCORE_MARGIN",
    "MIN_WINNING_SCORE",
    "NO_SIGNAL_REASON",
    "SCAN_HEAD_CHARS",
    "SCAN_TAIL_CHARS",
    "TaskClassifier",
    "classify",
]

LABELS: Final[tuple[str, ...]] = (
    "chat",
    "code",
    "reasoning",
    "long_context",
    "summarize",
    "translate",
)
"""Every label the classifier can return (besides None, an abstention)."""

_CHAT: Final = LABELS.index("chat")
_CODE: Final = LABELS.index("code")
_REASONING: Final = LABELS.index("reasoning")
_LONG_CONTEXT: Final = LABELS.index("long_context")
_SUMMARIZE: Final = LABELS.index("summarize")
_TRANSLATE: Final = LABELS.index("translate")

DEFAULT_LONG_CONTEXT_CHARS: Final = 48_000
"""Conversation size (characters, about 12k tokens) above which it is long_context."""

DEFAULT_HISTORY_CHARS: Final = 2_000
"""Characters of earlier turns scanned when the last user message is unclear."""

SCAN_HEAD_CHARS: Final = 4_096
"""Characters read from the start of the last user message."""

SCAN_TAIL_CHARS: Final = 4_096
"""Characters read from the end of the last user message."""

MIN_WINNING_SCORE: Final = 2
"""The least score a label needs to win (one medium signal, or two weak ones)."""

MIN_SCORE_MARGIN: Final = 1
"""How much the winner must lead the runner-up by; a tie abstains."""

_HISTORY_MAX_MESSAGES: Final = 6
"""At most this many earlier messages are scanned, however short they are."""

_CHAT_FALLBACK_MAX_CHARS: Final = 280
"""A message with no task signal (chat ones aside) is chat when at most this long ..."""

_CHAT_FALLBACK_MIN_WORDS: Final = 2
"""... and at least this many words (a lone word stays ambiguous)."""

_STRONG: Final = 3
_MEDIUM: Final = 2
_WEAK: Final = 1

NO_SIGNAL_REASON: Final = "no clear signal"
_EMPTY_REASON: Final = "empty message"
_NO_USER_REASON: Final = "no user message"
_CHAT_FALLBACK_REASON: Final = "short message without task signals"
_EARLIER_PREFIX: Final = "earlier message: "

# --- signal tables ---------------------------------------------------------
# Every signal has an id; ids >= _SIGNAL_COUNT are the same signals found in
# earlier messages. Structural signals come first, then keywords.
#
# Nothing is searched blindly: a detector runs only when one of its `keys` is
# present, a key being a word of the message (one set intersection finds them
# all) or a punctuation character (a C-speed `in` each). Then any of
# its `substrings` must occur (a C-speed `in`), then its regex must match; a
# detector without a regex fires on its gate alone. Regexes begin with a
# literal or a character class where possible so that `re` skips ahead fast.


class _Detector(NamedTuple):
    """One way to find a structural signal (`reason` names the signal)."""

    reason: str
    keys: tuple[str, ...] = ()
    """Words (lower case) or single punctuation characters that gate it; none
    means it is always tried (keep those few and cheap)."""
    substrings: tuple[str, ...] = ()
    """It fires only if one of these occurs (when given)."""
    regex: str | None = None
    lowered: bool = False
    """Search the lower-cased text (else the text as written)."""
    non_ascii: bool = False
    """Gated by the text containing non-ASCII characters instead of by keys."""


def _split(words: str) -> tuple[str, ...]:
    """The space-separated words of `words` (keeps long word lists readable)."""
    return tuple(words.split())


_STRUCTURAL_SIGNALS: Final[dict[str, tuple[int, int]]] = {
    "fenced code block": (_CODE, _STRONG),
    "stack trace": (_CODE, _STRONG),
    "error name": (_CODE, _MEDIUM),
    "function definition": (_CODE, _MEDIUM),
    "class definition": (_CODE, _MEDIUM),
    "import statement": (_CODE, _MEDIUM),
    "SQL query": (_CODE, _MEDIUM),
    "code syntax": (_CODE, _MEDIUM),
    "source file name": (_CODE, _MEDIUM),
    "shell command": (_CODE, _MEDIUM),
    "math expression": (_REASONING, _MEDIUM),
    "math notation": (_REASONING, _MEDIUM),
}
"""reason -> (label, weight) of every structural signal."""

_SOURCE_EXTENSIONS: Final = _split(
    "py pyi ipynb js mjs cjs ts tsx jsx java kt kts c cc cpp cxx h hpp rs go rb php cs"
    " swift sh bash zsh ps1 sql yaml yml toml ini cfg json xml html css scss vue svelte"
    " lua pl scala dart gradle tf proto"
)

_SHELL_TOOLS: Final = _split(
    "pip pip3 npm npx yarn pnpm cargo git docker kubectl apt brew make cmake gcc g++"
    " clang javac go mvn gradle poetry uv conda rustc node"
)

_SHELL_SUBCOMMANDS: Final = _split(
    "install uninstall run build commit push pull clone test add init get exec apply"
    " rebase merge checkout compose start status log diff reset stash update upgrade"
)

_SHELL_ARGUMENTS: Final = r"\s+(?:" + "|".join(_SHELL_SUBCOMMANDS) + r")\b"


def _word_start(word: str) -> str:
    """A regex for `word` at a word start (an apostrophe may be typographic).

    The word comes first, so that `re` can skip ahead to its literal prefix, and
    only then the look-behind for the boundary.
    """
    literal = re.escape(word).replace("'", "['\u2019]")
    return rf"{literal}(?<!\w{literal})"


def _per_word(
    reason: str, words: Iterable[str], after: str, *, lowered: bool = False
) -> tuple[_Detector, ...]:
    """One detector per word, each keyed by its word: `<word><after>`."""
    return tuple(
        _Detector(reason, keys=(word,), regex=_word_start(word) + after, lowered=lowered)
        for word in words
    )


_DETECTORS: Final[tuple[_Detector, ...]] = (
    _Detector("fenced code block", keys=("`", "~"), substrings=("```", "~~~")),
    _Detector(
        "stack trace", keys=("traceback",), substrings=("Traceback (most recent call last)",)
    ),
    _Detector("stack trace", keys=("thread",), substrings=('Exception in thread "',)),
    _Detector("stack trace", keys=("panicked",), substrings=("panicked at",)),
    _Detector("stack trace", keys=("segmentation",), substrings=("Segmentation fault",)),
    _Detector("stack trace", keys=("dumped",), substrings=("core dumped",)),
    _Detector(
        "stack trace",
        keys=("file",),
        substrings=('File "',),
        regex=r'File "[^"\n]{1,300}", line \d+',
    ),
    _Detector("stack trace", keys=("java", "kt", "scala"), regex=r"\.(?:java|kt|scala):\d+\)"),
    _Detector(
        "stack trace",
        keys=("js", "mjs", "cjs", "ts", "jsx", "tsx"),
        regex=r"\n[ \t]+at [^\n]{1,200}?:\d+:\d+\)?[ \t]*(?:\n|$)",
    ),
    _Detector("stack trace", keys=("goroutine",), regex=r"goroutine \d+ \["),
    _Detector(
        "error name",
        substrings=("Error", "Exception"),
        regex=r"Error(?<=[A-Za-z]Error)\b|Exception(?<=[A-Za-z]Exception)\b",
    ),
    _Detector("error name", keys=("error",), substrings=("error[E",), regex=r"error\[E\d{4}\]"),
    _Detector(
        "error name",
        keys=("undefined", "symbol"),
        substrings=("undefined reference to", "cannot find symbol"),
    ),
    *_per_word("function definition", ("def", "fn", "func"), r"\s+\w+\s*[(<]", lowered=True),
    _Detector(
        "function definition",
        keys=("function",),
        regex=r"function\b\s*\w*\s*\(",
        lowered=True,
    ),
    _Detector("function definition", keys=("lambda",), regex=r"lambda\b[\w\s,]*:", lowered=True),
    _Detector("function definition", keys=("=",), substrings=("=>",), regex=r"[\w)]\s*=>"),
    *_per_word(
        "class definition",
        ("class", "struct", "interface", "enum", "trait", "impl"),
        r"\s+[A-Z]\w*\s*(?:[:({<]|extends\b|implements\b|for\b)",
    ),
    _Detector(
        "import statement",
        keys=("import",),
        regex=r"(?m)^[ \t]*(?:import\s+[\w.]+|from\s+[\w.]+\s+import\s)",
    ),
    _Detector("import statement", keys=("#",), substrings=("#include",), regex=r"#include\s*[<\"]"),
    _Detector(
        "import statement",
        keys=("require",),
        substrings=("require(",),
        regex=r"require\(\s*['\"]",
    ),
    _Detector("import statement", keys=("namespace",), substrings=("using namespace ",)),
    _Detector(
        "SQL query",
        keys=("select",),
        substrings=("SELECT",),
        regex=r"SELECT\s[^;]{1,200}?\sFROM\s",
    ),
    _Detector(
        "SQL query",
        keys=("into", "table", "from"),
        substrings=("INSERT INTO", "CREATE TABLE", "DELETE FROM", "ALTER TABLE"),
    ),
    _Detector("SQL query", keys=("update",), substrings=("UPDATE",), regex=r"UPDATE\s+\w+\s+SET\s"),
    _Detector("SQL query", keys=("*",), substrings=("select * from",), lowered=True),
    _Detector("code syntax", keys=("console",), substrings=("console.log",), lowered=True),
    _Detector("code syntax", keys=("system",), substrings=("System.out.",)),
    _Detector("code syntax", keys=(":",), substrings=("std::",)),
    _Detector("code syntax", keys=("=",), substrings=("===", "!==")),
    _Detector("code syntax", keys=("&",), substrings=("&&",)),
    _Detector("code syntax", keys=("|",), substrings=("||",)),
    _Detector("code syntax", keys=("(",), substrings=("()",)),
    _Detector("code syntax", keys=(";", "{"), regex=r"(?m)[;{][ \t]*$"),
    *_per_word("code syntax", ("const", "var", "val"), r"\s+\w+\s*=", lowered=True),
    _Detector("code syntax", keys=("mut",), regex=r"\blet\s+mut\b", lowered=True),
    _Detector(
        "source file name",
        keys=_SOURCE_EXTENSIONS,
        # The dot first lets `re` skip ahead; the look-behind then wants two
        # name characters before it ("main.py", not "a.c").
        regex=r"\.(?<=[\w-]{2}\.)(?:" + "|".join(map(re.escape, _SOURCE_EXTENSIONS)) + r")\b",
    ),
    *_per_word("shell command", _SHELL_TOOLS, _SHELL_ARGUMENTS, lowered=True),
    _Detector("shell command", keys=("apt",), regex="apt-get" + _SHELL_ARGUMENTS, lowered=True),
    _Detector("shell command", keys=("$",), regex=r"\$[ \t]+[a-z]"),
    # The operator first (a rare character, so `re` skips ahead), then a
    # look-behind for the digit before it: "17 * 23", "2+2", "2^10".
    _Detector(
        "math expression",
        keys=("+", "*", "^"),
        regex=r"[+*^](?:(?<=\d[+*^])|(?<=\d\s[+*^]))\s*\(?-?\d",
    ),
    _Detector(
        "math expression",
        non_ascii=True,
        regex=r"\d\s*[\u00d7\u00f7]\s*\(?-?\d",
    ),
    _Detector(
        "math expression",
        keys=("-", "/"),
        substrings=(" - ", " / "),
        regex=r" [-/] (?<=\d [-/] )\(?-?\d",
    ),
    _Detector(
        "math expression",
        keys=("^", "*"),
        regex=r"\^(?<=[a-z)]\^)\s*-?\d|\*\*(?<=[a-z)]\*\*)\s*-?\d",
        lowered=True,
    ),
    _Detector(
        "math expression",
        keys=("=",),
        regex=r"=(?:(?<=\d=)|(?<=\d\s=)|(?<=\d[a-z]=)|(?<=\d[a-z]\s=))\s*-?\d",
        lowered=True,
    ),
    _Detector(
        "math notation",
        non_ascii=True,
        regex="[\u2211\u222b\u221a\u03c0\u221e\u2264\u2265\u2260\u00b1\u2200\u2203\u2208"
        "\u2209\u2282\u2286\u2227\u2228\u00ac\u21d2\u21d4\u2202\u2207\u220f]",
    ),
    _Detector(
        "math notation",
        keys=("\\",),
        regex=r"\\(?:frac|sum|int|sqrt|cdot|times|leq?|geq?|neq|mathbb|mathrm|infty"
        r"|alpha|beta|gamma|theta|lambda|sigma|pi|partial)\b",
        lowered=True,
    ),
    _Detector(
        "math notation",
        keys=("(",),
        substrings=("(x)", "(n)", "(t)"),
        regex=r"\b[fgh]\([xnt]\)\s*=",
        lowered=True,
    ),
)


_Keywords = tuple[int, int, tuple[str, ...]]
"""(label, weight, words or phrases), all lower case."""

_LANGUAGES: Final = (
    "english",
    "french",
    "spanish",
    "german",
    "italian",
    "portuguese",
    "dutch",
    "russian",
    "chinese",
    "mandarin",
    "cantonese",
    "japanese",
    "korean",
    "arabic",
    "hindi",
    "turkish",
    "polish",
    "swedish",
    "norwegian",
    "danish",
    "finnish",
    "greek",
    "hebrew",
    "ukrainian",
    "vietnamese",
    "thai",
    "indonesian",
    "czech",
    "romanian",
    "hungarian",
    "latin",
    "persian",
    "urdu",
    "bengali",
    "swahili",
)

_KEYWORDS: Final[tuple[_Keywords, ...]] = (
    (
        _CHAT,
        _MEDIUM,
        (
            "hi",
            "hello",
            "hey",
            "hiya",
            "howdy",
            "greetings",
            "thanks",
            "thx",
            "lol",
            "haha",
            "bye",
            "goodbye",
            "cheers",
            "good morning",
            "good afternoon",
            "good evening",
            "good night",
            "thank you",
            "how are you",
            "how's it going",
            "what's up",
            "nice to meet you",
            "tell me a joke",
            "how was your day",
        ),
    ),
    (
        _CHAT,
        _WEAK,
        (
            "joke",
            "jokes",
            "favorite",
            "favourite",
            "recommend",
            "opinion",
            "chat",
            "bored",
            "weekend",
            "movie",
            "movies",
            "music",
            "hobby",
            "hobbies",
            "weather",
            "what do you think",
            "do you like",
        ),
    ),
    (
        _CODE,
        _MEDIUM,
        (
            "refactor",
            "refactoring",
            "regex",
            "regexp",
            "debug",
            "debugging",
            "debugger",
            "compile",
            "compiler",
            "compiling",
            "segfault",
            "stacktrace",
            "traceback",
            "linter",
            "dockerfile",
            "makefile",
            "stack trace",
            "unit test",
            "unit tests",
            "pull request",
            "syntax error",
            "null pointer",
            "race condition",
            "memory leak",
            "code review",
        ),
    ),
    (
        _CODE,
        _WEAK,
        (
            "bug",
            "bugs",
            "buggy",
            "code",
            "coding",
            "function",
            "functions",
            "method",
            "variable",
            "script",
            "api",
            "library",
            "python",
            "java",
            "javascript",
            "typescript",
            "rust",
            "golang",
            "c++",
            "c#",
            "sql",
            "html",
            "css",
            "json",
            "yaml",
            "docker",
            "kubernetes",
            "git",
            "github",
            "repo",
            "repository",
            "database",
            "algorithm",
            "implement",
            "implementation",
            "programming",
            "deploy",
            "server",
            "frontend",
            "backend",
            "crash",
            "crashes",
            "exception",
            "endpoint",
            "query",
            "framework",
            "react",
            "django",
            "flask",
            "nodejs",
            "npm",
            "linux",
            "bash",
            "terminal",
        ),
    ),
    (
        _REASONING,
        _STRONG,
        ("step by step", "prove that", "chain of thought", "show your work", "think carefully"),
    ),
    (
        _REASONING,
        _MEDIUM,
        (
            "prove",
            "proof",
            "derive",
            "derivation",
            "calculate",
            "calculation",
            "solve",
            "equation",
            "equations",
            "theorem",
            "lemma",
            "probability",
            "integral",
            "derivative",
            "riddle",
            "puzzle",
            "deduce",
            "syllogism",
            "logic puzzle",
            "explain why",
        ),
    ),
    (
        _REASONING,
        _WEAK,
        (
            "why",
            "reasoning",
            "estimate",
            "optimal",
            "math",
            "maths",
            "logic",
            "compute",
            "infer",
            "induction",
            "contradiction",
            "paradox",
            "hypothesis",
            "analyze",
            "analyse",
            "what if",
            "how many",
            "how much",
        ),
    ),
    (
        _SUMMARIZE,
        _STRONG,
        (
            "summarize",
            "summarise",
            "summarized",
            "summarised",
            "summarizing",
            "summarising",
            "summarization",
            "tldr",
            "tl;dr",
            "tl dr",
            "key points",
            "key takeaways",
            "main points",
            "executive summary",
            "sum up",
            "sum it up",
        ),
    ),
    (
        _SUMMARIZE,
        _MEDIUM,
        (
            "summary",
            "recap",
            "condense",
            "gist",
            "shorten",
            "in a nutshell",
            "bullet points",
            "brief overview",
            "boil down",
            "short version",
        ),
    ),
    (_SUMMARIZE, _WEAK, ("overview", "brief", "briefly", "takeaways", "outline")),
    (
        _TRANSLATE,
        _STRONG,
        (
            "translate",
            "translation",
            "translating",
            "translated",
            "traduire",
            "traduis",
            "traduce",
            "traducir",
            "traduzir",
            "traduza",
            "tradurre",
            "traduci",
            "übersetze",
            "übersetzen",
            "übersetzung",
            "how do you say",
            "cómo se dice",
            "comment dit-on",
            *(f"into {language}" for language in _LANGUAGES),
        ),
    ),
    (_TRANSLATE, _MEDIUM, tuple(f"in {language}" for language in _LANGUAGES)),
)

_PUNCTUATION: Final = (
    "!\"$%&'()*,-./:;<=>?@[\\]^`{|}~"
    "\u201c\u201d\u2018\u2019\u00ab\u00bb\u00bf\u00a1\u2026\u2014\u2013"
)
"""Where words split, besides white space (not `+`, `#`, `_`: c++, c#, snake_case)."""

_PUNCTUATION_TO_SPACE: Final = [
    " " if chr(code) in _PUNCTUATION else chr(code)
    for code in range(max(map(ord, _PUNCTUATION)) + 1)
]
"""A `str.translate` table: a list is faster to index than a dict; code points
past its end raise IndexError, which `translate` takes as "keep"."""


def _words_of(text: str) -> list[str]:
    """The words of lower-cased `text`, as the classifier sees them."""
    return text.translate(_PUNCTUATION_TO_SPACE).split()


def _phrase_regex(phrase: str) -> str:
    """A regex for a lower-case phrase, any run of spaces or dashes between words.

    It begins with the phrase's first word as a literal, so `re` can skip ahead,
    and only then looks behind for the word boundary.
    """
    first, *rest = re.split(r"[\s\-]+", phrase)
    words = (re.escape(word).replace("'", "['\u2019]") for word in rest)
    return "".join((_word_start(first), *(rf"[\s\-]+{word}" for word in words), r"(?!\w)"))


_Check = tuple[tuple[str, ...], re.Pattern[str] | None, bool, int]
"""A detector as run: (substrings, regex or None, search lower-cased, signal)."""


class _Tables(NamedTuple):
    """The signal tables, built once at import."""

    labels: tuple[int, ...]
    weights: tuple[int, ...]
    reasons: tuple[str, ...]
    ungated: tuple[_Check, ...]
    non_ascii: tuple[_Check, ...]
    by_key: dict[str, tuple[int, tuple[_Check, ...]]]
    """key -> (its keyword signal or -1, the detectors it gates)."""
    symbols: tuple[str, ...]
    """The punctuation keys (each looked for with `in`, faster than a regex)."""


def _build_tables() -> _Tables:
    """Number the signals and index their detectors by key."""
    labels: list[int] = []
    weights: list[int] = []
    reasons: list[str] = []
    ungated: list[_Check] = []
    non_ascii: list[_Check] = []
    keyword: dict[str, int] = {}
    gated: dict[str, list[_Check]] = {}

    def add(label: int, weight: int, reason: str) -> int:
        labels.append(label)
        weights.append(weight)
        reasons.append(reason)
        return len(labels) - 1

    structural = {
        reason: add(label, weight, reason)
        for reason, (label, weight) in _STRUCTURAL_SIGNALS.items()
    }
    for detector in _DETECTORS:
        regex = None if detector.regex is None else re.compile(detector.regex)
        check = (detector.substrings, regex, detector.lowered, structural[detector.reason])
        if detector.non_ascii:
            non_ascii.append(check)
        elif not detector.keys:
            ungated.append(check)
        for key in detector.keys:
            gated.setdefault(key, []).append(check)
    for label, weight, entries in _KEYWORDS:
        for entry in entries:
            signal = add(label, weight, f"keyword '{entry}'")
            words = _words_of(entry)
            if words == [entry]:
                keyword[entry] = signal
            else:
                # A phrase: looked for only when its longest word is present.
                phrase = re.compile(_phrase_regex(entry))
                gated.setdefault(max(words, key=len), []).append(((), phrase, True, signal))
    keys = sorted(keyword.keys() | gated.keys())
    return _Tables(
        labels=(*labels, *labels),
        weights=(*weights, *weights),
        reasons=(*reasons, *(_EARLIER_PREFIX + reason for reason in reasons)),
        ungated=tuple(ungated),
        non_ascii=tuple(non_ascii),
        by_key={key: (keyword.get(key, -1), tuple(gated.get(key, ()))) for key in keys},
        symbols=tuple(key for key in keys if len(key) == 1 and not key.isalnum()),
    )


_TABLES: Final = _build_tables()
_SIGNAL_LABEL: Final = _TABLES.labels
_SIGNAL_WEIGHT: Final = _TABLES.weights
_SIGNAL_REASON: Final = _TABLES.reasons
_UNGATED: Final = _TABLES.ungated
_NON_ASCII: Final = _TABLES.non_ascii
_BY_KEY: Final = _TABLES.by_key
_KEYS: Final = frozenset(_BY_KEY)
_SYMBOL_KEYS: Final = _TABLES.symbols
_SIGNAL_COUNT: Final = len(_SIGNAL_LABEL) // 2
_EARLIER: Final = _SIGNAL_COUNT
"""Added to a signal id when the signal was found in an earlier message."""
_SIGNAL_ORDER: Final = tuple(
    (signal >= _EARLIER, -weight, signal) for signal, weight in enumerate(_SIGNAL_WEIGHT)
)
"""Sort key of the reasons: this message's first, then the strongest, then table order."""

_NO_USER_MESSAGE: Final = Classification(label=None, reasons=(NO_SIGNAL_REASON, _NO_USER_REASON))
_EMPTY_MESSAGE: Final = Classification(label=None, reasons=(NO_SIGNAL_REASON, _EMPTY_REASON))
_NOTHING_FOUND: Final = Classification(label=None, reasons=(NO_SIGNAL_REASON,))
_SHORT_CHAT: Final = Classification(label=LABELS[_CHAT], reasons=(_CHAT_FALLBACK_REASON,))


def _run(
    checks: Iterable[_Check],
    texts: tuple[str, str],
    offset: int,
    scores: list[int],
    fired: list[int],
) -> None:
    """Run detectors whose gate passed; fire each new signal that they find.

    Args:
        checks: the detectors to run.
        texts: the window as written and lower-cased (indexed by `lowered`).
        offset: 0 for the last user message, `_EARLIER` for earlier ones.
        scores: per label, increased by the weight of each new signal.
        fired: the signals found so far, appended to.
    """
    for substrings, regex, on_lowered, base in checks:
        signal = base + offset
        if signal in fired:
            continue
        text = texts[on_lowered]
        if substrings:
            for substring in substrings:
                if substring in text:
                    break
            else:
                continue
        if regex is None or regex.search(text) is not None:
            fired.append(signal)
            scores[_SIGNAL_LABEL[signal]] += _SIGNAL_WEIGHT[signal]


def _scan(window: str, offset: int, scores: list[int], fired: list[int]) -> None:
    """Fire every signal found in `window`, each once.

    Args:
        window: the text to read (already bounded in size).
        offset: 0 for the last user message, `_EARLIER` for earlier ones.
        scores: per label, increased by the weight of each new signal.
        fired: the signals found so far, appended to.
    """
    lowered = window.lower()
    texts = (window, lowered)
    _run(_UNGATED, texts, offset, scores, fired)
    if not window.isascii():
        _run(_NON_ASCII, texts, offset, scores, fired)
    # Set order varies between runs; the verdict and the reasons do not.
    present = _KEYS.intersection(_words_of(lowered)).union(
        [symbol for symbol in _SYMBOL_KEYS if symbol in window]
    )
    for key in present:
        keyword, checks = _BY_KEY[key]
        if keyword >= 0 and keyword + offset not in fired:
            fired.append(keyword + offset)
            scores[_SIGNAL_LABEL[keyword]] += _SIGNAL_WEIGHT[keyword]
        if checks:
            _run(checks, texts, offset, scores, fired)


def _window(text: str) -> str:
    """`text`, or its head and tail when it is longer than both together."""
    if len(text) <= SCAN_HEAD_CHARS + SCAN_TAIL_CHARS:
        return text
    return text[:SCAN_HEAD_CHARS] + "\n" + text[-SCAN_TAIL_CHARS:]


def _winner(scores: Sequence[int]) -> int | None:
    """The label that scores enough and leads by enough, else None."""
    best = -1
    best_score = 0
    runner_up = 0
    for label, score in enumerate(scores):
        if score > best_score:
            runner_up = best_score
            best, best_score = label, score
        elif score > runner_up:
            runner_up = score
    if best_score < MIN_WINNING_SCORE or best_score - runner_up < MIN_SCORE_MARGIN:
        return None
    return best


def _reasons(fired: Iterable[int], label: int | None) -> tuple[str, ...]:
    """Reasons of the signals of `label` (all signals if None), strongest first."""
    chosen = [s for s in fired if label is None or _SIGNAL_LABEL[s] == label]
    chosen.sort(key=_SIGNAL_ORDER.__getitem__)
    return tuple([_SIGNAL_REASON[s] for s in chosen])


class TaskClassifier:
    """Labels a conversation with one of `LABELS`, or abstains.

    Pure and deterministic: the same messages always give the same verdict.
    """

    def __init__(
        self,
        *,
        long_context_chars: int = DEFAULT_LONG_CONTEXT_CHARS,
        history_chars: int = DEFAULT_HISTORY_CHARS,
    ) -> None:
        """Set the thresholds.

        Args:
            long_context_chars: a conversation longer than this many characters
                (all messages together) is long_context.
            history_chars: how many characters of earlier turns to read when the
                last user message alone is unclear; 0 reads none.

        Raises:
            ValueError: `long_context_chars` is below 1 or `history_chars` below 0.
        """
        if long_context_chars < 1:
            raise ValueError(f"long_context_chars must be at least 1, not {long_context_chars}")
        if history_chars < 0:
            raise ValueError(f"history_chars must be at least 0, not {history_chars}")
        self._long_context_chars = long_context_chars
        self._history_chars = history_chars

    def classify(self, messages: Sequence[ChatMessage]) -> Classification:
        """Label a conversation.

        Args:
            messages: the conversation, oldest first.

        Returns:
            The label and the signals that chose it; `label=None` (first reason
            "no clear signal") when no label stands out.
        """
        total_chars = 0
        last_user = -1
        for index, message in enumerate(messages):
            total_chars += len(message.content)
            if message.role == "user":
                last_user = index
        is_long = total_chars > self._long_context_chars
        if last_user < 0 and not is_long:
            return _NO_USER_MESSAGE
        text = messages[last_user].content if last_user >= 0 else ""
        if not is_long and (not text or text.isspace()):
            return _EMPTY_MESSAGE

        scores = [0] * len(LABELS)
        fired: list[int] = []
        if text:
            _scan(_window(text), 0, scores, fired)
        task_signals_in_last = sum(scores) - scores[_CHAT]
        label = _winner(scores)
        if label is None and self._history_chars and last_user > 0:
            self._scan_history(messages, last_user, scores, fired)
            label = _winner(scores)

        if is_long:
            size = f"conversation of {total_chars} characters"
            other = _reasons(fired, label) if label is not None else ()
            return Classification(label=LABELS[_LONG_CONTEXT], reasons=(size, *other))
        if label is not None:
            return Classification(label=LABELS[label], reasons=_reasons(fired, label))
        if (
            not task_signals_in_last
            and len(text) <= _CHAT_FALLBACK_MAX_CHARS
            and len(text.split()) >= _CHAT_FALLBACK_MIN_WORDS
        ):
            return _SHORT_CHAT
        if not fired:
            return _NOTHING_FOUND
        return Classification(label=None, reasons=(NO_SIGNAL_REASON, *_reasons(fired, None)))

    def _scan_history(
        self,
        messages: Sequence[ChatMessage],
        last_user: int,
        scores: list[int],
        fired: list[int],
    ) -> None:
        """Scan the tails of the turns before `last_user`, newest first, within budget."""
        budget = self._history_chars
        scanned = 0
        for index in range(last_user - 1, -1, -1):
            if budget <= 0 or scanned >= _HISTORY_MAX_MESSAGES:
                return
            content = messages[index].content
            if messages[index].role == "system" or not content:
                continue
            tail = content[-budget:]
            budget -= len(tail)
            scanned += 1
            _scan(tail, _EARLIER, scores, fired)


_DEFAULT_CLASSIFIER: Final = TaskClassifier()


def classify(messages: Sequence[ChatMessage]) -> Classification:
    """Label a conversation with the default thresholds (see `TaskClassifier`).

    Args:
        messages: the conversation, oldest first.

    Returns:
        The label and the signals that chose it, or `label=None` to abstain.
    """
    return _DEFAULT_CLASSIFIER.classify(messages)
