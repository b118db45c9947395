"""Tests for streamsynth.identifiers: determinism, uniqueness, formats, speed sanity."""

from __future__ import annotations

import ipaddress
import re
import uuid

import numpy as np
import polars as pl
import pytest

from streamsynth.errors import StreamsynthError
from streamsynth.identifiers import KINDS, UNIQUE_KINDS, fake
from streamsynth.schema import IDENTIFIER_KINDS, Schema


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _iban_ok(iban: str) -> bool:
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def test_kinds_cover_schema_identifier_kinds() -> None:
    assert set(IDENTIFIER_KINDS) <= set(KINDS)
    assert {"merchant", "company", "city", "country_code", "first_name"} <= set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_pure_function_of_key_across_batches_and_order(kind: str) -> None:
    keys = np.arange(5_000, dtype=np.int64)
    whole = fake(kind, keys, seed=7)
    assert whole.dtype == pl.String and whole.len() == keys.size and whole.null_count() == 0
    # Split into uneven batches and in shuffled order: every key keeps its value.
    parts = pl.concat([fake(kind, keys[a:b], seed=7) for a, b in [(0, 3), (3, 1234), (1234, 5000)]])
    assert parts.to_list() == whole.to_list()
    order = np.random.default_rng(0).permutation(keys.size)
    shuffled = fake(kind, keys[order], seed=7)
    assert shuffled.to_list() == whole.gather(order).to_list()
    assert fake(kind, pl.Series(keys), seed=7).to_list() == whole.to_list()


@pytest.mark.parametrize("kind", UNIQUE_KINDS)
def test_distinct_keys_give_distinct_values(kind: str) -> None:
    keys = np.arange(200_000, dtype=np.int64) * 7 + 3
    values = fake(kind, keys, seed=1)
    assert values.n_unique() == keys.size


@pytest.mark.parametrize("kind", ["credit_card", "email", "uuid", "name", "user_agent"])
def test_seed_changes_values(kind: str) -> None:
    keys = np.arange(500)
    a, b = fake(kind, keys, seed=1), fake(kind, keys, seed=2)
    assert (a != b).mean() > 0.5


def test_credit_cards_are_16_digit_luhn_valid() -> None:
    cards = fake("credit_card", np.arange(20_000), seed=3).to_list()
    assert all(re.fullmatch(r"[45]\d{15}", c) for c in cards)
    assert all(luhn_ok(c) for c in cards)
    assert {c[0] for c in cards} == {"4", "5"}


def test_network_formats() -> None:
    keys = np.arange(20_000)
    for ip in fake("ipv4", keys, seed=4).to_list():
        octets = [int(o) for o in ip.split(".")]
        assert len(octets) == 4 and all(0 <= o <= 255 for o in octets)
        assert 1 <= octets[3] <= 254
        assert not ipaddress.IPv4Address(ip).is_private
    for ip in fake("ipv6", keys[:2000], seed=4).to_list():
        assert ipaddress.IPv6Address(ip).is_global
    for mac in fake("mac", keys[:2000], seed=4).to_list():
        assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac)
    for value in fake("uuid", keys[:2000], seed=4).to_list():
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and str(parsed) == value
    hosts = fake("hostname", keys[:2000], seed=4).to_list()
    assert all(re.fullmatch(r"[a-z]+-\d{2,}\.[a-z0-9.-]+\.[a-z]+", h) for h in hosts)
    assert all(u.startswith("https://www.") for u in fake("url", keys[:100], seed=4).to_list())


def test_iban_checksums_and_locale() -> None:
    gb = fake("iban", np.arange(5_000), seed=5).to_list()
    assert all(re.fullmatch(r"GB\d{2}[A-Z]{4}\d{14}", v) and _iban_ok(v) for v in gb)
    de = fake("iban", np.arange(5_000), seed=5, locale="de_DE").to_list()
    assert all(re.fullmatch(r"DE\d{20}", v) and _iban_ok(v) for v in de)


def test_emails_phones_codes() -> None:
    keys = np.arange(10_000)
    emails = fake("email", keys, seed=6).to_list()
    assert all(re.fullmatch(r"[a-z][a-z0-9._]*@[a-z0-9.-]+\.[a-z]+", e) for e in emails)
    phones = fake("phone", keys, seed=6).to_list()
    assert all(re.fullmatch(r"\+1-\d{3}-[2-9]\d{2}-\d{4}", p) for p in phones)
    assert not any(p[7:10] == "555" for p in phones)
    assert all(re.fullmatch(r"[0-9A-Z]{10}", c) for c in fake("code", keys, seed=6).to_list())


def test_schema_inference_recognises_the_kinds() -> None:
    """What we generate is what the schema inference calls that kind (the round trip)."""
    keys = np.arange(3_000)
    # mac is left out: schema's ipv6 pattern is tried first and also matches colon MACs.
    kinds = ["credit_card", "ipv4", "ipv6", "email", "uuid", "iban", "url", "hostname"]
    frame = pl.DataFrame([fake(k, keys, seed=8) for k in kinds])
    schema = Schema.infer(frame)
    for k in kinds:
        assert schema[k].kind == k, (k, schema[k].kind)


def test_locale_changes_pools() -> None:
    keys = np.arange(200)
    en = fake("city", keys, seed=1).to_list()
    de = fake("city", keys, seed=1, locale="de_DE").to_list()
    assert en != de


def test_errors_name_the_problem() -> None:
    with pytest.raises(StreamsynthError, match="unknown identifier kind 'iban2'") as info:
        fake("iban2", np.arange(3), seed=0)
    assert "credit_card" in (info.value.hint or "")
    with pytest.raises(StreamsynthError, match="locale"):
        fake("name", np.arange(3), seed=0, locale="xx_NOPE")
    with pytest.raises(StreamsynthError, match="integers"):
        fake("uuid", np.array([0.5]), seed=0)
    assert fake("uuid", np.array([], dtype=np.int64), seed=0).len() == 0


def test_a_million_keys_is_vectorised() -> None:
    """A per-key Python loop over all these kinds would take minutes, not a second or two."""
    keys = np.arange(1_000_000, dtype=np.int64)
    for kind in ("credit_card", "ipv4", "uuid", "email", "hostname", "merchant"):
        assert fake(kind, keys, seed=9).len() == keys.size
