"""Names and brands out of a prompt: an admin's deny-list of words and phrases.

A celebrity's or a brand's name in a prompt asks Stable Diffusion for a likeness or a logo;
the deny-list removes such names from the user's prompt and from the prompt assistant's text
alike, whether or not a language model runs, and says what it removed. The list is plain text,
one word or phrase a line, ``#`` starting a comment (storage keeps it in the data folder).

A term matches as a whole word or phrase, in any case, with a possessive ``'s`` after it, and
with spaces, hyphens and underscores between its words counted alike ("coca cola" removes
"Coca-Cola"); "Nike" does not remove "Nikes" or "unnike". What is left is tidied: doubled
spaces and commas, and emphasis brackets emptied by the removal ("(Nike:1.3)").
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from core.errors import InputError

_SEPARATOR = re.compile(r"[\s\-_]+")
_TIDY = (
    (re.compile(r"\(\s*(?::\s*[-+]?[\d.]+\s*)?\)|\[\s*\]"), ""),  # emphasis brackets left empty
    (re.compile(r"[ \t]+([,.;!?])"), r"\1"),  # a space left before punctuation
    (re.compile(r"([,;])(?:\s*[,;])+"), r"\1"),  # a comma left after a comma
    (re.compile(r"[ \t]{2,}"), " "),
)


@dataclass(frozen=True)
class Filtered:
    """A text after the deny-list, and what was removed from it (as written there, in order)."""

    text: str
    removed: tuple[str, ...] = ()


@dataclass(frozen=True)
class DenyList:
    """The words and phrases to take out of prompts (lower-cased, in the order written)."""

    terms: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "DenyList":
        """One term a line; blank lines and ``#`` comments skipped, repeats dropped."""
        terms = (" ".join(line.split("#", 1)[0].split()).lower() for line in text.splitlines())
        return cls(tuple(dict.fromkeys(term for term in terms if term)))

    @classmethod
    def read(cls, path: str | Path) -> "DenyList":
        """The list in ``path``; no file is an empty list (the admin has not written one)."""
        try:
            return cls.parse(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"the prompt deny-list {str(path)!r} cannot be read ({exc}); fix or remove the "
                             "file (plain UTF-8 text, one word or phrase a line)") from None

    @cached_property
    def _pattern(self) -> re.Pattern | None:
        if not self.terms:
            return None
        longest_first = sorted(self.terms, key=len, reverse=True)  # "coca cola zero" before "coca cola"
        words = ("[\\s\\-_]+".join(map(re.escape, _SEPARATOR.split(term))) for term in longest_first)
        return re.compile(r"(?<!\w)(?:" + "|".join(words) + r")(?:['’]s)?(?!\w)", re.IGNORECASE)

    @property
    def digest(self) -> str:
        """A short hash of the terms, for the run record: which list a run was filtered with."""
        return hashlib.sha256("\n".join(self.terms).encode()).hexdigest()[:12]

    def apply(self, text: str) -> Filtered:
        """``text`` without the listed terms, tidied; unchanged when nothing matched."""
        if self._pattern is None:
            return Filtered(text)
        removed = [match.group(0) for match in self._pattern.finditer(text)]
        if not removed:
            return Filtered(text)
        left = self._pattern.sub("", text)
        for pattern, replacement in _TIDY:
            left = pattern.sub(replacement, left)
        return Filtered(left.strip(" \t,;"), tuple(dict.fromkeys(removed)))

    def __len__(self) -> int:
        return len(self.terms)
