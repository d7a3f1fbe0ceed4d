"""Words of a run of non-Chinese text, cut as ``nltk.word_tokenize`` cuts them for CMRC 2018.

The official CMRC 2018 evaluation hands every run of characters that are not Chinese (and
not in its punctuation list, which it has already dropped) to ``nltk.word_tokenize``, i.e.
the Penn Treebank conventions.  nltk is not a dependency here, so :func:`latin_words`
follows those conventions itself:

* whitespace separates words;
* ``( ) [ ] { } < > ; @ # $ % & ? !``, the quotes ``‘ « „ »`` and ``...`` stand alone;
* ``"`` (and ``''`` after a character that was not cut off) stands alone, written
  ````` `` ````` when it opens (at the start, or after a space, a bracket or an opening
  quote) and ``''`` otherwise;
* a comma stands alone unless a digit follows it (``4,000`` stays one word);
* a period stays in its word (``u.s.``, ``3.5``, ``a.``) except the last one of the run,
  when only closing brackets, quotes and spaces follow it (``j.k.`` -> ``j.k`` ``.``);
* an apostrophe that ends a word before a space stands alone (``boys'`` -> ``boys`` ``'``),
  and so do the endings ``'s 'm 'd 'll 're 've n't`` (``men's`` -> ``men`` ``'s``,
  ``don't`` -> ``do`` ``n't``), and an apostrophe before a one-letter word other than
  m, t, s, d (``'a``);
* ``cannot gimme gonna gotta lemme more'n d'ye`` (between word boundaries), ``wanna``
  (before a space) and ``'tis 'twas`` (after one) are cut in two: ``can`` ``not``.

"Digit" and "word boundary" are ASCII, as under the Python 2 the official script needs.
This agrees with nltk 3.4 and 3.4.5 (the last release for Python 2) on every run of the
CMRC 2018 dev answers and contexts and on 165,785 substrings of them (docs/metrics.md).
Known differences: ``word_tokenize`` first cuts text into sentences with its Punkt model,
so a period that ends a word *inside* a run (``learning. machine``) may be cut off there,
where here it is not (nine dev answers have one, each after an initial, which Punkt's
rule for initials should not take for a sentence end before a lowercase word); and runs
of apostrophes (``n't's'``, ``#''n't``) can come out differently.
"""

from __future__ import annotations

from typing import Iterator

ALONE = frozenset("()[]{}<>;@#$%&?!‘«„»")
OPENERS_BEFORE_QUOTE = frozenset(" ([{<‘«„")  # after one of these, a double quote opens
CLOSERS = frozenset(")]}>\"'»” ")  # may follow the run's last period, which is then cut off
ENDINGS = (("'s", "'m", "'d", "'"), ("'ll", "'re", "'ve", "n't"))  # at most one of each group, in this order
TWO_PART_WORDS = (("can", "not"), ("d", "'ye"), ("gim", "me"), ("gon", "na"), ("got", "ta"), ("lem", "me"),
                  ("more", "'n"))
ASCII_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
DIGITS = frozenset("0123456789")


def latin_words(run: str) -> list[str]:
    """The words ``nltk.word_tokenize(run)`` gives (see the module docstring for the rules)."""
    words: list[str] = []
    for piece, space_before, space_after in _pieces(run):
        parts = _cut_endings(piece) if space_after else [piece]
        words.extend(part for part in _cut_two_part_words(parts, space_before, space_after) if part)
    return words


def _pieces(run: str) -> Iterator[tuple[str, bool, bool]]:
    """``(piece, space_before, space_after)``: the run cut at whitespace and around what stands
    alone; ``space_*`` is False only next to whitespace other than a plain space."""
    final = _cut_period(run)
    start, i, after_cut_comma = 0, 0, -1
    space_before = True
    while i < len(run):
        char, alone, width = run[i], None, 1
        if char.isspace():
            alone = ""
        elif char == '"':
            alone = "``" if _opens(run, i) else "''"
        elif run.startswith("''", i) and i > 0 and (_opens(run, i) or start < i):
            alone, width = ("``" if _opens(run, i) else "''"), 2
        elif run.startswith("...", i):
            alone, width = "...", 3
        elif char in ALONE or i == final:
            alone = char
        elif char == "," and (i != after_cut_comma or i == len(run) - 1) and run[i + 1:i + 2] not in DIGITS:
            alone, after_cut_comma = char, i + 1  # nltk does not look at the next character as a comma
        elif char == "'" and _apostrophe_alone(run, i):
            alone = char
        if alone is None:
            i += 1
            continue
        spaced = not char.isspace() or char == " "
        if start < i:
            yield run[start:i], space_before, spaced
        if alone:
            yield alone, True, True
        space_before = spaced
        i += width
        start = i
    if start < len(run):
        yield run[start:], space_before, True


def _cut_period(run: str) -> int:
    """Index of the period cut off at the end of the run, or -1."""
    i = len(run.rstrip()) - 1
    while i >= 0 and run[i] in CLOSERS and not (run[i] == '"' and _opens(run, i)):
        i -= 1
    return i if i >= 1 and run[i] == "." and run[i - 1] != "." else -1


def _opens(run: str, i: int) -> bool:
    """Whether the quote at ``i`` opens."""
    return i == 0 or run[i - 1] in OPENERS_BEFORE_QUOTE or run[:i] == '"'


def _apostrophe_alone(run: str, i: int) -> bool:
    """An apostrophe before a one-letter word other than m, t, s, d (``'a``)."""
    after = run[i + 1:i + 3]
    return (after[:1].isalnum() or after[:1] == "_") and after[0].lower() not in "mtsd" \
        and not (after[1:].isalnum() or after[1:] == "_")


def _cut_endings(word: str) -> list[str]:
    """Cut a trailing apostrophe or clitic off ``word`` (which a space follows)."""
    tail: list[str] = []
    for endings in ENDINGS:
        for ending in endings:
            stem = word[:-len(ending)]
            if word.endswith(ending) and stem and stem[-1] not in "' ":
                word, tail = stem, [ending, *tail]
                break
    return [word, *tail]


def _cut_two_part_words(parts: list[str], space_before: bool, space_after: bool) -> list[str]:
    for first, second in TWO_PART_WORDS:
        parts = [cut for part in parts for cut in _cut_at_word(part, first, second)]
    last = parts[-1] if parts else ""
    if space_after and last.endswith("wanna") and (len(last) == 5 or last[-6] not in ASCII_WORD):
        parts[-1:] = [last[:-5], "wan", "na"]
    return [cut for at, part in enumerate(parts) for cut in _cut_tis(part, space_before or at > 0)]


def _cut_at_word(text: str, first: str, second: str) -> list[str]:
    """``text`` with every ``first + second`` that stands between word boundaries cut in two."""
    word, at = first + second, 0
    while (at := text.find(word, at)) >= 0:
        end = at + len(word)
        if (at == 0 or text[at - 1] not in ASCII_WORD) and (end == len(text) or text[end] not in ASCII_WORD):
            return [text[:at], first, second, *_cut_at_word(text[end:], first, second)]
        at += 1
    return [text]


def _cut_tis(part: str, space_before: bool) -> list[str]:
    """``'tis`` -> ``'t is``, ``'twas`` -> ``'t was`` at the start of a part that follows a space."""
    for ending in ("is", "was"):
        rest = part[2 + len(ending):]
        if space_before and part.startswith("'t" + ending) and (not rest or rest[0] not in ASCII_WORD):
            return ["'t", ending, rest]
    return [part]
