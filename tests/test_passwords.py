"""Password hashes: salted, never the password, checked exactly."""

import pytest

from meterguard.passwords import check_password, hash_password


def test_hashes_are_salted_and_check_only_the_right_password() -> None:
    first, second = hash_password("meter-reader-42"), hash_password("meter-reader-42")
    assert first != second  # a fresh salt each time
    assert "meter-reader-42" not in first
    assert check_password("meter-reader-42", first)
    assert check_password("meter-reader-42", second)
    assert not check_password("meter-reader-43", first)
    assert not check_password("meter-reader-42", None)
    with pytest.raises(ValueError, match="at least 8"):
        hash_password("short")
