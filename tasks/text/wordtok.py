"""Word tokenization and detokenization for one-sentence-per-line text.

The rule, applied to Unicode text (any script, accents and combining marks count as letters):

* Whitespace separates tokens and is never part of one.
* A word is a run of letters, digits, combining marks and '_', which may continue across
  - an apostrophe or hyphen between two word characters: "l'Equipe", "O'Neill", "Germany's",
    "well-known", "5-3" stay one token (names with elisions and hyphens are entities as a whole);
  - '.', ',', ':' or '/' between two digits: "3.5", "1,000", "1.000.000", "12:30", "1/2".
* Letters each followed by a period, at least twice, are one abbreviation: "U.S.", "E.E.U.U.".
* Two or more periods are one ellipsis token ("..."), two or more hyphens one dash ("--").
* Any other character (punctuation, symbols, ¿ ¡ « » quotes, %) is a token by itself.
* Invisible format characters (zero-width space, soft hyphen, BOM) only separate tokens.

So `word_tokenize("¿Dónde está l'Equipe?")` is ['¿', 'Dónde', 'está', "l'Equipe", '?'].
URLs and e-mail addresses are split at their punctuation; PTB clitics are not split off ("don't").

`detokenize` joins tokens with single spaces except: no space before , . ; : ! ? % ) ] } » ” ’ …
and '...', no space after ( [ { ¿ ¡ « “ ‘ $ £, none around '/', straight quotes (" and ') alternate
between opening and closing, and PTB clitics ('s 're 've 'll 'd 'm n't) attach to the word before.
For ordinary, normally spaced text, `detokenize(word_tokenize(text)) == text`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_W = r"[\w\u0300-\u036f]"  # \w misses combining marks, which decomposed (NFD) accents use
_FORMAT = "\u00ad\u200b\u200c\u200d\u200e\u200f\u2060\ufeff"
_TOKEN = re.compile(
    rf"""
    (?:[^\W\d_]\.){{2,}}                                   # abbreviation: U.S.
    | \.{{2,}} | -{{2,}}                                   # ellipsis, dash
    | {_W}+(?:(?:['’-]|(?<=\d)[.,:/](?=\d)){_W}+)*         # word, number, hyphen/apostrophe compound
    | [^\w\s{_FORMAT}]                                     # any other visible character
    """,
    re.VERBOSE,
)

_NO_SPACE_BEFORE = frozenset(",.;:!?%)]}»”’…/") | {"...", "''"}
_NO_SPACE_AFTER = frozenset("([{¿¡«“‘$£/") | {"``"}
_TOGGLE_QUOTES = frozenset({'"', "'"})
_CLITIC = re.compile(r"^(?:['’](?:s|re|ve|ll|d|m)|n['’]t)$", re.IGNORECASE)


def word_tokenize(text: str) -> list[str]:
    """Split one sentence into word tokens by the rule in this module's docstring."""
    return _TOKEN.findall(text)


def detokenize(tokens: Sequence[str]) -> str:
    """Join word tokens into text, placing spaces as normally written (see the module docstring)."""
    parts: list[str] = []
    glue_next = True  # nothing before the first token
    open_quotes: set[str] = set()
    for token in tokens:
        if not token:
            continue
        glue_left = token in _NO_SPACE_BEFORE or bool(_CLITIC.match(token))
        glue_right = token in _NO_SPACE_AFTER
        if token in _TOGGLE_QUOTES:
            # A straight quote closes the one it opened earlier, else it opens one.
            if token in open_quotes:
                open_quotes.discard(token)
                glue_left = True
            else:
                open_quotes.add(token)
                glue_right = True
        if parts and not glue_left and not glue_next:
            parts.append(" ")
        parts.append(token)
        glue_next = glue_right
    return "".join(parts)
