"""Realistic-looking identifiers (cards, IPs, emails, IBANs, ...), consistent per entity key.

``fake(kind, keys, seed)`` is a pure function of (kind, key, seed): vectorised numpy for the
numeric kinds, cached seeded Faker pools combined with key-derived parts for the others.
Nothing is ever copied from training data.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import polars as pl

from streamsynth.errors import StreamsynthError
from streamsynth.rng import child_seed, hash64

_POOL = 2048  # Faker values drawn once per (kind, locale, seed)
_U = np.uint64


# -- key permutations -------------------------------------------------------------------------
def _permute(keys: np.ndarray, seed: int, a: int, b: int, rounds: int = 4) -> np.ndarray:
    """A seeded bijection of ``[0, a*b)`` (a Feistel network over the a x b grid).

    Keys are taken modulo ``a*b``, so distinct keys below ``a*b`` give distinct outputs: this
    is what keeps card numbers, MACs and IPs unique per entity while looking random.
    """
    x = keys % _U(a * b)
    left, right = x // _U(b), x % _U(b)
    size_l, size_r = a, b
    for r in range(rounds):
        # (L in A, R in B) -> (R in B, (L + F(R)) mod A in A): a bijection for any F.
        f = hash64(seed, r, right) % _U(size_l)
        left, right = right, (left + f) % _U(size_l)
        size_l, size_r = size_r, size_l
    return left * _U(b) + right


def _split(keys: np.ndarray, seed: int, pool: int) -> tuple[np.ndarray, np.ndarray]:
    """(pool index, ordinal) with (key -> pair) injective: keys 0..pool-1 get ordinal 0."""
    q = keys // _U(pool)
    idx = (keys % _U(pool) + hash64(seed, q) % _U(pool)) % _U(pool)
    return idx.astype(np.int64), q


# -- vectorised formatting ----------------------------------------------------------------------
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_B36 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)


def _digits(
    values: np.ndarray, width: int, base: int = 10, alphabet: np.ndarray = _HEX
) -> np.ndarray:
    """An (n, width) uint8 matrix of zero-padded ASCII digits of ``values`` in ``base``."""
    out = np.empty((values.shape[0], width), dtype=np.uint8)
    v = values.astype(np.uint64, copy=True)
    for col in range(width - 1, -1, -1):
        out[:, col] = alphabet[(v % _U(base)).astype(np.intp)]
        v //= _U(base)
    return out


def _const(n: int, text: str) -> np.ndarray:
    return np.broadcast_to(np.frombuffer(text.encode(), dtype=np.uint8), (n, len(text)))


def _strings(*parts: np.ndarray, name: str) -> pl.Series:
    """Join (n, w_i) ASCII matrices column-wise into one String series."""
    mat = np.ascontiguousarray(np.concatenate(parts, axis=1))
    width = mat.shape[1]
    return pl.Series(name, mat.view(f"S{width}").ravel()).cast(pl.String)


def _pick(pool: tuple[str, ...], idx: np.ndarray) -> pl.Series:
    return pl.Series(pool, dtype=pl.String).gather(pl.Series(idx.astype(np.int64)))


# -- Faker pools --------------------------------------------------------------------------------
@lru_cache(maxsize=128)
def _pool(method: str, locale: str, seed: int, unique: bool = False) -> tuple[str, ...]:
    """``_POOL`` values of a Faker provider, from a Faker seeded by (method, seed)."""
    try:
        from faker import Faker

        faker = Faker(locale)
    except (AttributeError, ModuleNotFoundError, ValueError) as exc:
        raise StreamsynthError(
            f"unknown Faker locale {locale!r} ({exc})",
            hint="use a locale such as en_US, de_DE, fr_FR",
        ) from None
    faker.seed_instance(child_seed(seed, "pool", method, locale) & 0xFFFFFFFF)
    provider: Callable[[], str] = getattr(faker, method)
    values = [str(provider()) for _ in range(_POOL)]
    if unique:
        values = list(dict.fromkeys(values))
    return tuple(values)


def _ascii_words(values: tuple[str, ...]) -> tuple[str, ...]:
    """Lower-case ASCII stems ending in a letter, deduplicated (for emails and usernames)."""
    out = []
    for v in values:
        stem = "".join(ch for ch in v.lower() if ch.isascii() and (ch.isalnum() or ch in "._"))
        stem = stem.rstrip("0123456789._")
        if stem and stem[0].isalpha():
            out.append(stem)
    return tuple(dict.fromkeys(out))


# -- the kinds ------------------------------------------------------------------------------------
def _credit_card(keys: np.ndarray, seed: int, locale: str) -> pl.Series:
    # Two-digit issuer prefixes: Visa 4x, Mastercard 51-55; 13 unique body digits; Luhn check.
    prefixes = np.array([*range(40, 50), *range(51, 56)], dtype=np.uint64)
    prefix = prefixes[hash64(seed, keys, 1) % _U(len(prefixes))]
    number = prefix * _U(10**13) + _permute(keys, seed, 10**6, 10**7)
    # Luhn: double every second digit counting from the rightmost one before the check digit.
    total = np.zeros(keys.shape[0], dtype=np.int64)
    v = number.astype(np.int64)
    for pos in range(15):
        v, d = np.divmod(v, 10)
        if pos % 2 == 0:
            d = 2 * d
            d -= 9 * (d > 9)
        total += d
    check = (10 - total % 10) % 10
    return _strings(_digits(number * _U(10) + check.astype(np.uint64), 16), name="credit_card")


_FIRST_OCTETS = np.array(
    [o for o in range(1, 224) if o not in (10, 100, 127, 169, 172, 192, 198, 203)], dtype=np.uint64
)


def _ipv4(keys: np.ndarray, seed: int, locale: str) -> pl.Series:
    # Public-looking unicast addresses; last octet 1..254 so no network/broadcast addresses.
    x = _permute(keys, seed, len(_FIRST_OCTETS), 256 * 256 * 254)
    first = _FIRST_OCTETS[(x // _U(256 * 256 * 254)).astype(np.intp)]
    rest = x % _U(256 * 256 * 254)
    frame = pl.DataFrame(
        {
            "a": first.astype(np.int64),
            "b": (rest // _U(256 * 254)).astype(np.int64),
            "c": (rest // _U(254) % _U(256)).astype(np.int64),
            "d": (rest % _U(254) + _U(1)).astype(np.int64),
        }
    )
    return frame.select(pl.format("{}.{}.{}.{}", "a", "b", "c", "d").alias("ipv4")).to_series()


def _ipv6(keys: np.ndarray, seed: int, locale: str) -> pl.Series:
    n = keys.shape[0]
    prefix = hash64(seed, keys, 1)
    # hash64 is a bijection of the key for a fixed seed, so the interface id is unique.
    iid = hash64(seed, keys)
    top = (prefix >> _U(52)) % _U(0x1000) + _U(0x2000)  # global unicast 2000::/3
    groups = [_digits(top, 4, 16)]
    for shift in (32, 16, 0):
        groups += [_const(n, ":"), _digits((prefix >> _U(shift)) & _U(0xFFFF), 4, 16)]
    for shift in (48, 32, 16, 0):
        groups += [_const(n, ":"), _digits((iid >> _U(shift)) & _U(0xFFFF), 4, 16)]
    return _strings(*groups, name="ipv6")


def _uuid(keys: np.ndarray, seed: int, locale: str) -> pl.Series:
    n = keys.shape[0]
    hi = hash64(seed, keys)  # unique per key; spread over the 122 free bits of a version-4 uuid
    lo = hash64(seed, keys, 1)
    time_low = hi >> _U(32)
    time_mid = (hi >> _U(16)) & _U(0xFFFF)
    time_hi = _U(0x4000) | ((hi >> _U(4)) & _U(0x0FFF))
    clock = _U(0x8000) | ((hi & _U(0xF)) << _U(10)) | ((lo >> _U(54)) & _U(0x3FF))
    node = lo & _U(0xFFFFFFFFFFFF)
    dash = _const(n, "-")
    return _strings(
        _digits(time_low, 8, 16), dash, _digits(time_mid, 4, 16), dash, _digits(time_hi, 4, 16),
        dash, _digits(clock, 4, 16), dash, _digits(node, 12, 16), name="uuid",
    )


_OUIS = np.array(
    [0x001A11, 0x00163E, 0x3C5AB4, 0x50E549, 0xA4C361, 0xF0D5BF, 0x8C8590, 0xDC2B61],
    dtype=np.uint64,
)


def _mac(keys: np.ndarray, seed: int, locale: str) -> pl.Series:
    n = keys.shape[0]
    x = _permute(keys, seed, len(_OUIS), 1 << 24)
    value = (_OUIS[(x >> _U(24)).astype(np.intp)] << _U(24)) | (x & _U(0xFFFFFF))
    parts = []
    for shift in range(40, -1, -8):
        parts.append(_digits((value >> _U(shift)) & _U(0xFF), 2, 16))
        if shift:
            parts.append(_const(n, ":"))
    return _strings(*parts, name="mac")


_AREA_CODES = np.array(
    [201, 212, 213, 305, 312, 347, 404, 415, 469, 503, 512, 602, 617, 646, 702, 713, 718, 720,
     773, 786, 805, 818, 832, 858, 917, 929, 949, 972],
    dtype=np.uint64,
)


def _phone(keys: np.ndarray, seed: int, locale: str) -> pl.Series:
    # North American numbers: exchange 200-999, never the 555 fiction range.
    n = keys.shape[0]
    x = _permute(keys, seed, len(_AREA_CODES), 799 * 10_000)
    area = _AREA_CODES[(x // _U(799 * 10_000)).astype(np.intp)]
    rest = x % _U(799 * 10_000)
    exchange = rest // _U(10_000) + _U(200)
    exchange = exchange + (exchange >= _U(555)).astype(np.uint64)
    dash = _const(n, "-")
    return _strings(
        _const(n, "+1-"), _digits(area, 3), dash, _digits(exchange, 3), dash,
        _digits(rest % _U(10_000), 4), name="phone",
    )


_GB_BANKS = ("NWBK", "BARC", "LOYD", "HBUK", "MIDL", "NAIA", "ABBY", "RBOS")


def _iban(keys: np.ndarray, seed: int, locale: str) -> pl.Series:
    n = keys.shape[0]
    german = locale.lower().startswith("de")
    if german:  # DE: 8-digit bank code + 10-digit account
        body = _permute(keys, seed, 10**8, 10**10)
        bban = _digits(body, 18)
        country = "DE"
    else:  # GB: 4-letter bank + 6-digit sort code + 8-digit account
        banks = np.frombuffer("".join(_GB_BANKS).encode(), dtype=np.uint8).reshape(-1, 4)
        bank = banks[(hash64(seed, keys, 1) % _U(len(_GB_BANKS))).astype(np.intp)]
        bban = np.concatenate([bank, _digits(_permute(keys, seed, 10**6, 10**8), 14)], axis=1)
        country = "GB"
    # ISO 7064 mod 97-10: BBAN + country + "00", letters as 10..35, then 98 - remainder.
    tail = np.concatenate([bban, _const(n, country + "00")], axis=1)
    rem = np.zeros(n, dtype=np.int64)
    for col in range(tail.shape[1]):
        c = tail[:, col].astype(np.int64)
        is_letter = c >= 65
        rem = np.where(is_letter, (rem * 100 + c - 55) % 97, (rem * 10 + c - 48) % 97)
    check = (98 - rem).astype(np.uint64)
    return _strings(_const(n, country), _digits(check, 2), bban, name="iban")


def _code(keys: np.ndarray, seed: int, locale: str) -> pl.Series:
    x = _permute(keys, seed, 36**5, 36**5)
    return _strings(_digits(x, 10, 36, _B36), name="code")


def _numbered(stems: pl.Series, ordinal: np.ndarray) -> pl.Series:
    """``stem`` for ordinal 0, else ``stem{ordinal}``: unique because stems end in a letter."""
    num = pl.Series(ordinal.astype(np.int64))
    return pl.select(
        pl.when(num == 0).then(stems).otherwise(pl.concat_str([stems, num.cast(pl.String)]))
    ).to_series()


def _username(keys: np.ndarray, seed: int, locale: str) -> pl.Series:
    stems = _ascii_words(_pool("user_name", locale, seed))
    idx, ordinal = _split(keys, seed, len(stems))
    return _numbered(_pick(stems, idx), ordinal).alias("username")


def _email(keys: np.ndarray, seed: int, locale: str) -> pl.Series:
    local = _username(keys, seed, locale)
    domains = _pool("free_email_domain", locale, seed) + _pool("domain_name", locale, seed)[:64]
    domain = _pick(domains, hash64(seed, keys, 2) % _U(len(domains)))
    return pl.select(pl.concat_str([local, pl.lit("@"), domain])).to_series().alias("email")


_HOST_ROLES = ("web", "app", "api", "db", "cache", "mq", "worker", "lb", "edge", "auth", "search")


def _hostname(keys: np.ndarray, seed: int, locale: str) -> pl.Series:
    domains = _pool("domain_name", locale, seed, unique=True)
    idx, ordinal = _split(keys, seed, len(domains))
    role = _pick(_HOST_ROLES, hash64(seed, keys, 1) % _U(len(_HOST_ROLES)))
    num = pl.Series((ordinal + _U(1)).astype(np.int64)).cast(pl.String).str.zfill(2)
    domain = _pick(domains, idx)
    host = pl.concat_str([role, pl.lit("-"), num, pl.lit("."), domain])
    return pl.select(host).to_series().alias("hostname")


def _url(keys: np.ndarray, seed: int, locale: str) -> pl.Series:
    domains = _pool("domain_name", locale, seed, unique=True)
    paths = _pool("uri_path", locale, seed)
    domain = _pick(domains, hash64(seed, keys, 1) % _U(len(domains)))
    path = _pick(paths, hash64(seed, keys, 2) % _U(len(paths)))
    return pl.select(
        pl.concat_str([pl.lit("https://www."), domain, pl.lit("/"), path])
    ).to_series().alias("url")


def _from_pool(method: str) -> Callable[[np.ndarray, int, str], pl.Series]:
    def make(keys: np.ndarray, seed: int, locale: str) -> pl.Series:
        pool = _pool(method, locale, seed)
        return _pick(pool, hash64(seed, keys) % _U(len(pool)))

    return make


_KINDS: dict[str, Callable[[np.ndarray, int, str], pl.Series]] = {
    "credit_card": _credit_card,
    "ipv4": _ipv4,
    "ipv6": _ipv6,
    "email": _email,
    "uuid": _uuid,
    "iban": _iban,
    "mac": _mac,
    "url": _url,
    "hostname": _hostname,
    "phone": _phone,
    "user_agent": _from_pool("user_agent"),
    "name": _from_pool("name"),
    "code": _code,
    "username": _username,
    "first_name": _from_pool("first_name"),
    "last_name": _from_pool("last_name"),
    "company": _from_pool("company"),
    "merchant": _from_pool("company"),
    "city": _from_pool("city"),
    "country": _from_pool("country"),
    "country_code": _from_pool("country_code"),
    "street_address": _from_pool("street_address"),
    "job": _from_pool("job"),
    "domain": _from_pool("domain_name"),
    "uri_path": _from_pool("uri_path"),
    "currency_code": _from_pool("currency_code"),
    "word": _from_pool("word"),
}

#: Every kind :func:`fake` knows; includes all of ``streamsynth.schema.IDENTIFIER_KINDS``.
KINDS: tuple[str, ...] = tuple(_KINDS)
#: Kinds whose values are distinct for distinct keys (below a kind-specific bound of >= 1e8).
UNIQUE_KINDS: tuple[str, ...] = (
    "credit_card", "ipv4", "ipv6", "email", "uuid", "iban", "mac", "hostname", "phone", "code",
    "username",
)


def fake(kind: str, keys: np.ndarray | pl.Series, seed: int, *, locale: str = "en_US") -> pl.Series:
    """One identifier string per key; a pure function of (kind, key, seed, locale).

    The same key gives the same value in any batch, order or process. For the kinds in
    :data:`UNIQUE_KINDS` distinct keys give distinct values (keys are non-negative entity
    numbers; larger spaces wrap around). Returns a String series named ``kind``.
    """
    try:
        make = _KINDS[kind]
    except KeyError:
        raise StreamsynthError(
            f"unknown identifier kind {kind!r}", hint=f"kinds are: {', '.join(KINDS)}"
        ) from None
    if isinstance(keys, pl.Series):
        keys = keys.to_numpy()
    keys = np.asarray(keys)
    if keys.dtype.kind not in "iu":
        raise StreamsynthError(
            f"identifier keys must be integers, got {keys.dtype}",
            hint="pass entity numbers (int64)",
        )
    keys = keys.astype(np.int64, copy=False).view(np.uint64).ravel()
    if keys.shape[0] == 0:
        return pl.Series(kind, [], dtype=pl.String)
    return make(keys, child_seed(seed, "identifier", kind), locale).alias(kind)
