"""What personal data looks like, and finding it in text: the values a use case declares personal
(names by their words, anything else verbatim by its tokens), the generic patterns (card
numbers, IBANs, emails, phone numbers), and a scan's findings."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from orchestration.lib.core.cards import luhn_valid

PAN_PATTERN = re.compile(
    r"(?<![0-9A-Za-z])(?<![0-9]\.)[0-9]{13,19}(?![0-9A-Za-z])(?!\.[0-9]*[1-9])"
)
"""A standalone digit run: not inside a longer token, nor a part of a decimal number with a
fraction. A whole number printed as a float (``4539578763621486.0``: a card number held in a
float column, as a report's chart data prints it) is still one."""

IBAN_PATTERN = re.compile(
    r"(?<![0-9A-Za-z])[A-Z]{2}[0-9]{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?)"
    r"(?![0-9A-Za-z])"
)
"""An IBAN's shape: country code, check digits, then the account, compact or printed in
groups of four; 15 to 34 characters without the spaces."""

IBAN_LENGTHS = range(15, 35)

EMAIL_PATTERN = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")

MAX_GENERIC_TLD = 6

VENDOR_EMAILS = frozenset({"contact@bentoml.com"})
"""Role addresses that libraries write into their own artifacts (BentoML puts its contact
address in every Bento's OpenAPI spec): organizational, not personal, data."""

PHONE_PATTERN = re.compile(
    r"(?<![0-9A-Za-z.-])(?:\+1-|001-)?"
    r"(?:\(\d{3}\) ?\d{3}[-. ]\d{4}|\d{3}-\d{3}-\d{4}|\d{3}\.\d{3}\.\d{4}|\d{3} \d{3} \d{4})"
    r"(?:x\d+)?(?![0-9])(?!\.[0-9])"
)
"""A North-American phone number as people and generators print it: ``(555)010-4477``,
``555-010-4477``, ``555.010.4477`` or ``555 010 4477``, an optional ``+1-`` or ``001-`` and
``x`` extension. One separator throughout, and never inside a decimal number: ``104117.3125``,
a number in a report's chart data, is not ``104-117.3125``."""

NAME_AFFIXES = {"mr", "mrs", "ms", "miss", "dr", "md", "phd", "dds", "dvm", "jr", "sr", "ii",
                "iii", "iv", "v"}
"""Titles and suffixes, as words (a period after a word is not part of it: "Dr." is "dr", and
a name at the end of a sentence is still a name)."""

WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")

LOWER_WORD = re.compile(r"[a-z][a-z'\-]*")
"""``WORD`` on lower-cased ASCII text: the same words, lower-cased in one C-level pass."""

TOKEN = re.compile(r"[a-z0-9]+")
"""What a value is matched verbatim by, on lower-cased text: its runs of letters and digits."""

MIN_VERBATIM_CHARS = 6
"""Letters and digits a value needs to be searched verbatim: a shorter one is not personal."""

DIGIT = re.compile(r"\d")

ASCII_UPPER = re.compile(r"[A-Z]")


def iban_valid(candidate: str) -> bool:
    """Whether an IBAN (spaces allowed) passes the ISO 13616 check: its country code and check
    digits moved to the end, letters as numbers (A = 10 ... Z = 35), it is 1 modulo 97."""
    compact = candidate.replace(" ", "").upper()
    if len(compact) not in IBAN_LENGTHS or not compact.isascii() or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _mask(value: str) -> str:
    return f"{value[:2]}…{value[-2:]} ({len(value)} chars)" if len(value) > 6 else "…"


def name_key(name: str) -> tuple[str, str] | None:
    """First and last core word of a full name, lower-cased (titles and suffixes dropped)."""
    words = [w.lower() for w in WORD.findall(name) if w.lower() not in NAME_AFFIXES]
    return (words[0], words[-1]) if len(words) >= 2 else None


def verbatim_key(value: str) -> tuple[str, ...] | None:
    """How a value with a digit or an @ is searched: its tokens (:data:`TOKEN`); None for a
    value of words only (a name, found by :func:`name_key`) or one too short to be personal."""
    if not (DIGIT.search(value) or "@" in value):
        return None
    tokens = tuple(TOKEN.findall(value.lower()))
    return tokens if sum(map(len, tokens)) >= MIN_VERBATIM_CHARS else None


@dataclass(frozen=True)
class PersonalData:
    """The values of the personal-data columns that must never appear outside the raw zone,
    each with the ``source.column`` it came from."""

    name_keys: Mapping[tuple[str, str], str]
    """:func:`name_key` of every value of words only."""
    verbatim: Mapping[tuple[str, ...], str]
    """:func:`verbatim_key` of every other value."""

    @functools.cached_property
    def last_names(self) -> frozenset[str]:
        """The last words of the names: a text without any of them holds no such name."""
        return frozenset(last for _, last in self.name_keys)

    @functools.cached_property
    def anchors(self) -> dict[str, list[tuple[int, tuple[str, ...]]]]:
        """Each verbatim value under its longest token (the rarest, likely), with that token's
        place in it: a text without any anchor holds no verbatim value."""
        found: dict[str, list[tuple[int, tuple[str, ...]]]] = {}
        for tokens in self.verbatim:
            place = max(range(len(tokens)), key=lambda i: len(tokens[i]))
            found.setdefault(tokens[place], []).append((place, tokens))
        return found

    @functools.cached_property
    def candidate_pattern(self) -> str:
        """A regular expression every table value holding one of these values matches (the
        superset DuckDB filters with, see :data:`CANDIDATE_SQL_PATTERN`)."""
        shapes = sorted({_shape(tokens) for tokens in self.verbatim if not _covered(tokens)})
        if len(shapes) > MAX_EXTRA_SHAPES:
            return "."  # too varied to filter: Python looks at every value
        return "|".join([CANDIDATE_SQL_PATTERN, *shapes])

    @classmethod
    def of(cls, labelled_values: Iterable[tuple[str, str]]) -> PersonalData:
        """From ``(source.column, value)`` pairs; a value keeps the first label it comes with."""
        name_keys: dict[tuple[str, str], str] = {}
        verbatim: dict[tuple[str, ...], str] = {}
        for label, value in labelled_values:
            if (tokens := verbatim_key(value)) is not None:
                verbatim.setdefault(tokens, label)
            elif (key := name_key(value)) is not None:
                name_keys.setdefault(key, label)
        return cls(name_keys, verbatim)

    def __bool__(self) -> bool:
        return bool(self.name_keys or self.verbatim)

    def __sub__(self, known: PersonalData) -> PersonalData:
        """What this holds and ``known`` does not."""
        return PersonalData(
            name_keys={k: v for k, v in self.name_keys.items() if k not in known.name_keys},
            verbatim={k: v for k, v in self.verbatim.items() if k not in known.verbatim},
        )

NO_PERSONAL_DATA = PersonalData({}, {})


@dataclass(frozen=True)
class Finding:
    location: str
    kind: str
    count: int
    hint: str

    def __str__(self) -> str:
        return f"{self.location}: {self.count} × {self.kind} (e.g. {self.hint})"


@dataclass
class ScanReport:
    findings: list[Finding] = field(default_factory=list)
    scanned: list[str] = field(default_factory=list)
    unchanged: int = 0
    """Files skipped as unchanged since a scan found them clean (see :class:`ScanCache`)."""

    @property
    def clean(self) -> bool:
        return not self.findings


def _verbatim_hits(lowered: str, personal: PersonalData) -> Iterator[tuple[str, ...]]:
    tokens = TOKEN.findall(lowered)
    anchors = personal.anchors
    if anchors.keys().isdisjoint(tokens):  # the common case, in C
        return
    for index, token in enumerate(tokens):
        for place, value in anchors.get(token, ()):
            start = index - place
            if start >= 0 and tuple(tokens[start:start + len(value)]) == value:
                yield value


def scan_values(values: Iterable[str], location: str, personal: PersonalData) -> list[Finding]:
    """Scan text values; one finding per kind with a count."""
    counts: dict[str, int] = {}
    hints: dict[str, str] = {}

    def hit(kind: str, value: str) -> None:
        counts[kind] = counts.get(kind, 0) + 1
        hints.setdefault(kind, _mask(value))

    for value in values:
        if not value:
            continue
        ascii_text = value.isascii()
        if DIGIT.search(value):
            for match in PAN_PATTERN.findall(value):
                if luhn_valid(match):
                    hit("card number (PAN)", match)
            for match in PHONE_PATTERN.findall(value):
                hit("phone number", match)
            for match in IBAN_PATTERN.findall(value):
                if iban_valid(match):
                    hit("IBAN", match)
        if "@" in value:
            for match in EMAIL_PATTERN.findall(value):
                # A long "top-level domain" is more often code (module@package.definitions)
                # than mail; a vendor's role address is not personal. Either counts only as a
                # known value (below).
                if match.lower() in VENDOR_EMAILS:
                    continue
                if len(match.rsplit(".", 1)[1]) <= MAX_GENERIC_TLD:
                    hit("email address", match)
        lowered = value.lower()
        if personal.verbatim:
            for tokens in _verbatim_hits(lowered, personal):
                hit(f"{personal.verbatim[tokens]} value", " ".join(tokens))
        if personal.name_keys and (
            ASCII_UPPER.search(value) if ascii_text else any(c.isupper() for c in value)
        ):
            if ascii_text:  # the common case, in C: most texts hold no known last name at all
                words = LOWER_WORD.findall(lowered)
                if personal.last_names.isdisjoint(words):
                    continue
            else:
                words = [w.lower() for w in WORD.findall(value)]
            words = [w for w in words if w not in NAME_AFFIXES]
            for pair in zip(words, words[1:], strict=False):
                if pair in personal.name_keys:
                    hit(f"{personal.name_keys[pair]} value", " ".join(pair))
    return [Finding(location, kind, counts[kind], hints[kind]) for kind in counts]

GENERIC_PATTERNS_DIGEST = hashlib.sha256(
    "\n".join(p.pattern for p in (PAN_PATTERN, IBAN_PATTERN, EMAIL_PATTERN, PHONE_PATTERN)).encode()
).hexdigest()[:16]
"""Which generic patterns a scan used: a scan cache made with other ones is not trusted (a file
found clean then may hold what the patterns find now)."""

CANDIDATE_SQL_PATTERN = (
    r"[0-9]{10}|@|[0-9]{3}[^0-9]{0,2}[0-9]{3}[^0-9][0-9]{4}|[A-Za-z]{2,}[^A-Za-z0-9]+[A-Za-z]{2,}"
    r"|[A-Z]{2}[0-9]{2}"
)
"""A value that matches none of these cannot hold a PAN, IBAN, email, phone or name: DuckDB
filters with it so Python only looks at candidates (a cheap superset of what ``scan_values``
finds with the generic patterns and the names). A known verbatim value that this pattern
could miss adds its shape (:attr:`PersonalData.candidate_pattern`)."""

MAX_EXTRA_SHAPES = 500


def _covered(tokens: tuple[str, ...]) -> bool:
    """Whether any text holding these tokens in a row matches :data:`CANDIDATE_SQL_PATTERN`
    whatever separates them: a token with ten digits in a row, or two adjacent tokens of two
    letters or more."""
    if any(re.search(r"[0-9]{10}", token) for token in tokens):
        return True
    return any(a.isalpha() and b.isalpha() and len(a) > 1 and len(b) > 1
               for a, b in zip(tokens, tokens[1:], strict=False))


def _shape(tokens: tuple[str, ...]) -> str:
    """A regular expression of the tokens' shape: runs of digits and letters by length,
    anything in between."""
    def run(match: re.Match[str]) -> str:
        kind = "[0-9]" if match.group()[0].isdigit() else "[A-Za-z]"
        return f"{kind}{{{len(match.group())}}}"

    return "[^A-Za-z0-9]+".join(re.sub(r"[0-9]+|[a-z]+", run, token) for token in tokens)

_WORD_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz")


def _has_word(lowered: str, word: str) -> bool:
    """Whether ``word`` occurs where :data:`LOWER_WORD` could cut it out of ``lowered`` as a
    whole word: not after a letter, not before a letter, an apostrophe or a hyphen (after an
    apostrophe or a hyphen it may be part of a longer word: a superset). A C-level search for
    the word and what follows; Python looks only at what precedes those matches."""
    if word not in lowered:
        return False
    for match in re.finditer(re.escape(word) + r"(?![a-z'\-])", lowered):
        if match.start() == 0 or lowered[match.start() - 1] not in _WORD_LETTERS:
            return True
    return False


def _has_token(lowered: str, token: str) -> bool:
    """Whether ``token`` occurs in ``lowered`` as :data:`TOKEN` cuts it out: not next to another
    letter or digit."""
    if token not in lowered:
        return False
    return re.search(rf"(?<![a-z0-9]){re.escape(token)}(?![a-z0-9])", lowered) is not None


def mentions_any(text: str, personal: PersonalData) -> bool:
    """Whether ``text`` may hold one of these values: a superset of what ``scan_values`` finds
    with them (a name needs its last name as a word; a verbatim value its anchor as a token)."""
    lowered = text.lower()
    if any(_has_token(lowered, anchor) for anchor in personal.anchors):
        return True
    if not text.isascii():  # lower-casing may turn other letters into ASCII ones: substrings
        return any(name in lowered for name in personal.last_names)
    return any(_has_word(lowered, name) for name in personal.last_names)


GENERIC_CANDIDATE = r"[0-9]{13}|@|[0-9]{3}[^0-9]{0,2}[0-9]{3}[^0-9][0-9]{4}|[A-Z]{2}[0-9]{2}"
"""A value matching none of these holds no card number, email, phone or IBAN: Arrow filters a
column with it before Python looks (a superset of what :func:`generic_personal_data` finds)."""


def generic_personal_data(text: str) -> str | None:
    """The kind of personal data the generic patterns find in ``text`` (a card number, an
    email, a phone number, an IBAN), or None: what a column that is not personal data must
    never hold (an id holding a card number would plant it outside the raw zone)."""
    findings = scan_values([text], "value", NO_PERSONAL_DATA)
    return findings[0].kind if findings else None
