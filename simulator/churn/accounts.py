"""The account system: who the account holders are, and its full daily snapshot.

Personal data comes from small word lists, drawn for all accounts at once. Every account's JSON
line is built once (column-wise in Arrow) and rebuilt only when the account changes, so a daily
snapshot is a join of cached bytes. The word lists hold no character JSON would escape.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from simulator import sources
from simulator.churn.config import PLANS, ChurnConfig
from simulator.churn.world import ADDRESS, PLAN, Accounts
from simulator.iban import german_ibans

FIRST_NAMES = (
    "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hannah", "Ida", "Jonas",
    "Karl", "Lea", "Mia", "Noah", "Olivia", "Paul", "Quentin", "Rosa", "Sophie", "Tom",
    "Ute", "Victor", "Wanda", "Xaver", "Yara", "Zoe", "Lukas", "Marie", "Elias", "Lina",
)  # fmt: skip
LAST_NAMES = (
    "Mueller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
    "Schulz", "Hoffmann", "Koch", "Richter", "Klein", "Wolf", "Neumann", "Schwarz",
    "Zimmermann", "Braun", "Krueger", "Hartmann", "Lange", "Werner", "Krause", "Lehmann",
)  # fmt: skip
STREETS = (
    "Linden", "Birken", "Eichen", "Garten", "Schiller", "Goethe", "Bahnhof", "Kirch",
    "Berg", "Wald", "Rosen", "Mozart", "Sonnen", "Feld", "Wiesen", "Markt",
)  # fmt: skip
STREET_KINDS = ("strasse", "weg", "allee", "platz", "ring")
CITIES = (
    ("Berlin", 10115), ("Hamburg", 20095), ("Muenchen", 80331), ("Koeln", 50667),
    ("Frankfurt", 60311), ("Stuttgart", 70173), ("Leipzig", 4109), ("Dresden", 1067),
    ("Bremen", 28195), ("Hannover", 30159), ("Nuernberg", 90402), ("Bonn", 53111),
)  # fmt: skip
EMAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.example")
MAX_HOUSE_NUMBER = 120
ZIP_SPREAD = 90
"""A city's postcodes: its first postcode plus 0..ZIP_SPREAD - 1."""
KEYS = (
    "account_id",
    "name",
    "email",
    "address",
    "iban",
    "plan",
    "monthly_price",
    "signup_date",
    "updated_at",
)
TEXT = pa.string()


def account_ids(accounts: np.ndarray) -> pa.Array:
    """``A`` and the account's index, seven digits (``A0000123``)."""
    return pc.binary_join_element_wise(
        "A", pc.utf8_lpad(pc.cast(pa.array(accounts), TEXT), 7, "0"), ""
    )


def _words(words: tuple[str, ...], index: np.ndarray) -> pa.Array:
    return pa.array(words, TEXT).take(pa.array(index))


def _numbers(values: np.ndarray, width: int = 1) -> pa.Array:
    return pc.utf8_lpad(pc.cast(pa.array(values), TEXT), width, "0")


def addresses(rng: np.random.Generator, count: int) -> pa.Array:
    """``<street><kind> <number>, <postcode> <city>``, e.g. ``Lindenweg 12, 10115 Berlin``."""
    draws = rng.integers(
        0,
        [len(STREETS), len(STREET_KINDS), MAX_HOUSE_NUMBER, len(CITIES), ZIP_SPREAD],
        size=(count, 5),
    )
    city, first_zip = zip(*CITIES, strict=True)
    street = pc.binary_join_element_wise(
        _words(STREETS, draws[:, 0]), _words(STREET_KINDS, draws[:, 1]), ""
    )
    postcode = _numbers(np.array(first_zip)[draws[:, 3]] + draws[:, 4], 5)
    return pc.binary_join_element_wise(
        street, " ", _numbers(draws[:, 2] + 1), ", ", postcode, " ", _words(city, draws[:, 3]), ""
    )


def personal_data(rng: np.random.Generator, n: int) -> dict[str, pa.Array]:
    """Name, email, address and IBAN of ``n`` account holders (emails unique by account)."""
    first = rng.integers(0, len(FIRST_NAMES), n)
    last = rng.integers(0, len(LAST_NAMES), n)
    domain = rng.integers(0, len(EMAIL_DOMAINS), n)
    bban = rng.integers(10**17, 10**18, n)
    first_names, last_names = _words(FIRST_NAMES, first), _words(LAST_NAMES, last)
    local = pc.utf8_lower(
        pc.binary_join_element_wise(first_names, ".", last_names, _numbers(np.arange(n)), "")
    )
    return {
        "name": pc.binary_join_element_wise(first_names, last_names, " "),
        "email": pc.binary_join_element_wise(local, _words(EMAIL_DOMAINS, domain), "@"),
        "address": addresses(rng, n),
        "iban": german_ibans(bban),
    }


def json_lines(columns: dict[str, pa.Array]) -> list[bytes]:
    """One JSON object per row, every value a string, keys in :data:`KEYS` order."""
    pieces: list[pa.Array | str] = []
    for i, key in enumerate(KEYS):
        pieces += [('{"' if i == 0 else '","') + f'{key}":"', columns[key]]
    pieces.append('"}\n')
    lines = pc.binary_join_element_wise(*pieces, "")
    return [line.encode() for line in lines.to_pylist()]


def last_of_each(account: np.ndarray) -> np.ndarray:
    """Positions of the last row of each account in ``account`` (rows in time order)."""
    _, from_the_end = np.unique(account[::-1], return_index=True)
    return len(account) - 1 - from_the_end


class AccountSystem:
    """Every account's current record, changed day by day by the behaviour's ``changes``."""

    def __init__(
        self,
        config: ChurnConfig,
        accounts: Accounts,
        signup_cents: np.ndarray,
        changes: dict[str, np.ndarray],
        rng: np.random.Generator,
    ):
        self._config, self._changes = config, changes
        n = accounts.n
        self._signup_day = accounts.signup_day
        signup = sources.datetime_strings(config.start, accounts.signup_day, accounts.signup_second)
        people = personal_data(rng, n)
        self._fixed = {
            "account_id": account_ids(np.arange(n)),
            "name": people["name"],
            "email": people["email"],
            "iban": people["iban"],
            "signup_date": pc.utf8_slice_codeunits(signup, 0, 10),
        }
        self._address = people["address"].to_numpy(zero_copy_only=False)
        self._plan = accounts.plan.copy()
        self._cents = signup_cents.copy()
        self._updated_day = accounts.signup_day.copy()
        self._updated_second = accounts.signup_second.copy()
        moved = np.flatnonzero(changes["kind"] == ADDRESS)
        self._new_address = np.full(len(changes["kind"]), None, dtype=object)
        self._new_address[moved] = addresses(rng, len(moved)).to_numpy(zero_copy_only=False)
        self._lines = json_lines(self._record(np.arange(n)))
        self._day_start = np.searchsorted(changes["day"], np.arange(config.n_days + 1))

    def _record(self, rows: np.ndarray) -> dict[str, pa.Array]:
        """The current fields of accounts ``rows``."""
        take = pa.array(rows)
        return {
            **{key: values.take(take) for key, values in self._fixed.items()},
            "address": pa.array(self._address[rows], TEXT),
            "plan": _words(PLANS, self._plan[rows]),
            "monthly_price": sources.amount_strings(self._cents[rows]),
            "updated_at": sources.datetime_strings(
                self._config.start, self._updated_day[rows], self._updated_second[rows]
            ),
        }

    def end_of_day(self, day: int) -> bytes:
        """Apply day ``day``'s changes; return that day's full JSON lines snapshot."""
        first, stop = int(self._day_start[day]), int(self._day_start[day + 1])
        if stop > first:
            self._apply(np.arange(first, stop))
        signed_up = int(np.searchsorted(self._signup_day, day, side="right"))
        return b"".join(self._lines[:signed_up])

    def _apply(self, rows: np.ndarray) -> None:
        """Apply the changes ``rows`` (in time order: an account's last change wins)."""
        account, kind = self._changes["account"][rows], self._changes["kind"][rows]
        priced = rows[kind != ADDRESS]
        last = priced[last_of_each(self._changes["account"][priced])]
        self._cents[self._changes["account"][last]] = self._changes["cents"][last]
        replanned = rows[kind == PLAN]
        last = replanned[last_of_each(self._changes["account"][replanned])]
        self._plan[self._changes["account"][last]] = self._changes["plan"][last]
        moved = rows[kind == ADDRESS]
        last = moved[last_of_each(self._changes["account"][moved])]
        self._address[self._changes["account"][last]] = self._new_address[last]
        last = rows[last_of_each(account)]
        changed = self._changes["account"][last]
        self._updated_day[changed] = self._changes["day"][last]
        self._updated_second[changed] = self._changes["second"][last]
        for position, line in zip(changed, json_lines(self._record(changed)), strict=True):
            self._lines[position] = line
