"""The card-number module: one Luhn check, scalar and vectorized, that agree."""

import numpy as np
import pyarrow as pa

from orchestration.lib.core.cards import PAN_LENGTH, luhn_valid, luhn_valid_pans

PAN = "4539578763621486"  # passes Luhn


def test_luhn_accepts_a_valid_number_and_refuses_a_changed_check_digit():
    assert luhn_valid(PAN)
    assert not luhn_valid(PAN[:-1] + "7")
    assert luhn_valid("79927398713")  # any length: the textbook example


def test_the_vectorized_check_agrees_with_the_scalar_one():
    rng = np.random.default_rng(0)
    numbers = ["".join(map(str, rng.integers(0, 10, PAN_LENGTH))) for _ in range(2000)]
    numbers.append(PAN)
    vectorized = luhn_valid_pans(pa.array(numbers))
    assert vectorized.tolist() == [luhn_valid(n) for n in numbers]
    assert vectorized.any() and not vectorized.all()
    assert luhn_valid_pans(pa.array([], pa.string())).shape == (0,)
