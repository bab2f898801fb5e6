import math
from pathlib import Path

import pytest

from collector.profiles import (
    Profile,
    ReadRequest,
    RegisterEntry,
    builtin_profile,
    decode,
    encode,
    load_profile_file,
    plan_requests,
)
from meterguard.errors import ConfigError, DecodeError


def _profile(addresses: list[int], max_gap: int = 0, type_: str = "float32") -> Profile:
    return Profile.model_validate(
        {
            "name": "t",
            "max_gap": max_gap,
            "registers": [{"quantity": "v1", "address": a, "type": type_} for a in addresses],
        }
    )


def test_adjacent_registers_merge_and_gaps_split() -> None:
    plan = plan_requests(_profile([0, 2, 4, 20]))
    assert [(r.address, r.count) for r in plan] == [(0, 6), (20, 2)]
    plan = plan_requests(_profile([0, 2, 4, 20]), max_gap=14)
    assert [(r.address, r.count) for r in plan] == [(0, 22)]


def test_requests_never_exceed_the_size_limit() -> None:
    addresses = list(range(0, 400, 2))
    plan = plan_requests(_profile(addresses), max_count=125)
    assert all(r.count <= 125 for r in plan)
    covered = sorted(e.address for r in plan for e in r.entries)
    assert covered == addresses
    assert len(plan) == math.ceil(400 / 124)


def test_functions_are_planned_apart() -> None:
    profile = Profile.model_validate(
        {
            "name": "t",
            "registers": [
                {"quantity": "v1", "address": 0},
                {"quantity": "v2", "address": 2, "function": 3},
            ],
        }
    )
    plan = plan_requests(profile, max_gap=100)
    assert sorted((r.function, r.address) for r in plan) == [(3, 2), (4, 0)]


@pytest.mark.parametrize("order", ["ABCD", "CDAB", "BADC", "DCBA"])
@pytest.mark.parametrize(
    ("type_", "value"), [("float32", 231.25), ("int32", -70000), ("uint16", 50000), ("int16", -12)]
)
def test_encode_decode_round_trip(order: str, type_: str, value: float) -> None:
    entry = RegisterEntry.model_validate(
        {"quantity": "p1", "address": 10, "type": type_, "word_order": order}
    )
    request = ReadRequest(4, 10, entry.width, (entry,))
    assert decode(request, encode(value, entry.type, entry.word_order)) == {"p1": value}


def test_word_orders_mean_what_they_say() -> None:
    # 0x4366_4000 is 230.25 as float32; CDAB swaps the two words, BADC the bytes in each.
    assert encode(230.25, "float32", "ABCD") == [0x4366, 0x4000]
    assert encode(230.25, "float32", "CDAB") == [0x4000, 0x4366]
    assert encode(230.25, "float32", "BADC") == [0x6643, 0x0040]
    assert encode(230.25, "float32", "DCBA") == [0x0040, 0x6643]


def test_scale_and_wrong_register_count() -> None:
    entry = RegisterEntry.model_validate(
        {"quantity": "v1", "address": 0, "type": "uint16", "scale": 0.1}
    )
    request = ReadRequest(4, 0, 1, (entry,))
    assert decode(request, [2305]) == pytest.approx({"v1": 230.5})
    with pytest.raises(DecodeError, match="expected 1 registers, got 2"):
        decode(request, [1, 2])


def test_shipped_profiles_match_the_eastron_documents() -> None:
    sdm630 = {e.quantity: e.address for e in builtin_profile("sdm630").registers}
    assert sdm630["v1"] == 0x00
    assert sdm630["i3"] == 0x0A
    assert sdm630["q1"] == 0x18
    assert sdm630["f"] == 0x46
    assert sdm630["e_exp"] == 0x4A
    assert sdm630["in"] == 0xE0
    assert [(r.address, r.count) for r in plan_requests(builtin_profile("sdm630"))] == [
        (0x00, 0x4C),
        (0xE0, 2),
    ]
    assert set({e.quantity for e in builtin_profile("sdm120").registers}) == {
        "v1",
        "i1",
        "p1",
        "q1",
        "f",
        "e_imp",
        "e_exp",
    }


def test_bad_profiles_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such profile"):
        builtin_profile("sdm999")
    path = tmp_path / "p.toml"
    path.write_text('name = "x"\nregisters = [{ quantity = "volts", address = 0 }]\n')
    with pytest.raises(ConfigError, match="unknown quantity"):
        load_profile_file(path)
