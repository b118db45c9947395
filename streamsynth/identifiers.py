"""Realistic-looking identifiers (cards, IPs, emails, IBANs, ...), consistent per entity key.

``fake(kind, keys, seed)`` is a pure function of (kind, key, seed): vectorised numpy for the
numeric kinds, cached seeded Faker pools combined with key-derived parts for the others.
Nothing is ever copied from training data.

Identifiers of no known kind (``TX0000000000``, ``C000825``, ``9QDIS33PIA``) get a learned
:class:`Shape` (prefix, length, per-position characters, zero-padded counters) and
:func:`generate` makes new values of that shape that never equal a real one.
"""

from __future__ import annotations

import itertools
import math
import os
import string
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

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


# -- learned shapes -------------------------------------------------------------------------------
_MIN_SHAPE_VALUES = 5  # fewer distinct values say too little about a format
_MAX_NUMBER_WIDTH = 18  # digits that fit an int64
_MAX_CHARS_WIDTH = 64
# A random-looking shape is kept only when its space dwarfs the real values, so that a generated
# value equals a real one with probability below 1e-9 (no real value is stored to check against).
_SPACE_PER_VALUE = 1e9
_DENSE = 0.5  # numbers filling at least half of [min, max] are a counter
_TAIL_SPACE = 1 << 62  # positions drawn as one bijection of the key; the rest are hashed


@dataclass(frozen=True)
class Shape:
    """The format of an identifier column, learned from its values (JSON-serialisable).

    ``body`` is ``"number"`` (a decimal counter after ``prefix``, zero padded to ``width``
    digits when ``width`` > 0), ``"chars"`` (fixed length, ``alphabets[i]`` the characters
    allowed at position i) or ``"pattern"`` (several such templates: :func:`_pattern_shape`).
    Numbers come from the free range ``[low, low + size)``, which holds no real value (``size``
    0: unbounded above), in order (``sequential``) or scrambled.
    """

    prefix: str
    body: str
    width: int = 0
    low: int = 0
    size: int = 0
    order: str = "sequential"
    alphabets: tuple[str, ...] = ()
    #: ``"pattern"`` bodies: the templates, each (alphabets per position, weight, free range low, size)
    templates: tuple[tuple[tuple[str, ...], float, int, int], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["alphabets"] = list(self.alphabets)
        out["templates"] = [[list(a), w, low, size] for a, w, low, size in self.templates]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Shape:
        templates = tuple((tuple(a), float(w), int(low), int(size)) for a, w, low, size in data.get("templates", ()))
        return cls(**{**data, "alphabets": tuple(data.get("alphabets", ())), "templates": templates})


def learn_shape(values: pl.Series) -> Shape | None:
    """The shape of an identifier column, or None when its values share no usable format."""
    strings = values.drop_nulls().cast(pl.String).unique()
    if strings.len() < _MIN_SHAPE_VALUES or not strings.str.contains(r"^[\x21-\x7e]+$").all():
        return None
    # The common prefix of a set is that of its least and greatest member; a counter's leading
    # zeros belong to the number, not the prefix.
    prefix = os.path.commonprefix([strings.min(), strings.max()]).rstrip(string.digits)
    bodies = strings.str.slice(len(prefix))
    lengths = bodies.str.len_chars()
    if lengths.min() == 0:
        return None
    fixed = lengths.min() == lengths.max()
    if bodies.str.contains(r"^\d+$").all():
        return _number_shape(prefix, bodies, int(lengths.max()) if fixed else 0)
    if lengths.max() > _MAX_CHARS_WIDTH:
        return None
    shape = _chars_shape(prefix, bodies, int(lengths.max()), strings.len()) if fixed else None
    return shape or _pattern_shape(prefix, bodies)


def _number_shape(prefix: str, bodies: pl.Series, width: int) -> Shape | None:
    if width > _MAX_NUMBER_WIDTH or (not width and bodies.str.len_chars().max() > _MAX_NUMBER_WIDTH):
        return None
    if not width and bodies.str.starts_with("0").any():
        return None  # zeros in front but varying lengths: no format to keep
    nums = bodies.cast(pl.Int64).sort().to_numpy()
    lo, hi = int(nums[0]), int(nums[-1])
    if not width:  # not padded: continue past the largest
        return Shape(prefix, "number", 0, hi + 1, 0, "sequential")
    top = 10**width
    if hi - lo + 1 <= nums.size / _DENSE:
        return Shape(prefix, "number", width, hi + 1, top - hi - 1, "sequential")
    # Scattered numbers: the widest range holding none of them (below, between or above).
    gaps = np.diff(nums) - 1
    inner = int(np.argmax(gaps)) if gaps.size else 0
    options = [(lo, 0), (top - hi - 1, hi + 1)]
    if gaps.size:
        options.append((int(gaps[inner]), int(nums[inner]) + 1))
    size, low = max(options)
    return Shape(prefix, "number", width, low, size, "scrambled")


_CLASSES = (string.digits, string.ascii_uppercase, string.ascii_lowercase)


def _chars_shape(prefix: str, bodies: pl.Series, width: int, n_values: int) -> Shape | None:
    letters = set("".join(bodies.head(10_000).to_list())) - set(string.digits)
    hexlike = bool(letters) and (letters <= set("abcdef") or letters <= set("ABCDEF"))
    classes = (string.digits, "ABCDEF", "abcdef") if hexlike else _CLASSES
    alphabets = []
    for i in range(width):
        seen = set(bodies.str.slice(i, 1).unique().to_list())
        if len(seen) == 1:
            alphabets.append(seen.pop())  # the same character in every value: part of the format
            continue
        alpha = "".join(c for c in classes if seen & set(c))
        alphabets.append(alpha + "".join(sorted(seen - set(alpha))))
    space = math.prod(len(a) for a in alphabets)
    if space < _SPACE_PER_VALUE * n_values:
        return None
    return Shape(prefix, "chars", alphabets=tuple(alphabets))


_PATTERN_MAX_TEMPLATES = 32
_PATTERN_COVER = 0.99  # the templates kept cover this share of the values; rarer ones are dropped
_PATTERN_MIN_COVER = 0.9  # templates of at least _MIN_SHAPE_VALUES values must cover this share
_PATTERN_SLOTS = 1000  # a cycle of slots shares keys among templates by their weights
_RULE_VALUES_PER_CHAR = 5  # values per character of a class beyond which an unseen one is a rule


def _template(value: str) -> str:
    """A value's template: each digit, capital and small letter replaced by its class."""
    return value.translate(_CLASS_OF)


_CLASS_OF = str.maketrans({**{c: "9" for c in string.digits}, **{c: "A" for c in string.ascii_uppercase},
                           **{c: "a" for c in string.ascii_lowercase}})


def _pattern_shape(prefix: str, bodies: pl.Series) -> Shape | None:
    """Values of several lengths and character classes (tail numbers N1234, N12AB, N3ALA): the
    most frequent templates (a class per position), each with the whole class allowed where its
    values vary. Generated values come from each template's widest range holding no real value
    (ordered as numbers in the template's mixed radix), so none equals a real one and no real
    value is stored."""
    templates = bodies.map_elements(_template, return_dtype=pl.String)
    counts = pl.DataFrame({"body": bodies, "t": templates}).group_by("t").agg(pl.col("body")).with_columns(
        pl.col("body").list.len().alias("n")).sort("n", descending=True)
    kept, covered = [], 0
    pooled = _pooled(bodies.to_list())
    for template, values, n in counts.iter_rows():
        if len(kept) == _PATTERN_MAX_TEMPLATES or covered >= _PATTERN_COVER * bodies.len() or n < _MIN_SHAPE_VALUES:
            break
        alphabets = tuple(_position_alphabet({v[i] for v in values}, pooled[i]) for i in range(len(template)))
        if math.prod(len(a) for a in alphabets) > _TAIL_SPACE:
            return None
        low, size = _free_range(values, alphabets)
        kept.append((alphabets, float(n), low, size))
        covered += n
    if covered < _PATTERN_MIN_COVER * bodies.len() or sum(size for *_, size in kept) < len(bodies):
        return None  # no format most values share, or no room beside the real values
    return Shape(prefix, "pattern", templates=tuple(kept))


def _position_alphabet(seen: set[str], pooled: dict[str, tuple[set[str], int]]) -> str:
    """The characters a template position may take: for each class seen there, the characters
    any value holds at that position when those values are many enough that a missing one is a
    rule (tail numbers never start with 0, never hold I or O), else the whole class."""
    if len(seen) == 1:
        return seen.pop()  # the same character in every value: part of the format
    out = ""
    for chars in _CLASSES:
        if seen & set(chars):
            used, n_values = pooled.get(chars, (set(), 0))
            out += "".join(sorted(used)) if n_values >= _RULE_VALUES_PER_CHAR * len(chars) else chars
    return out + "".join(sorted(seen - set("".join(_CLASSES))))


def _pooled(bodies: list[str]) -> list[dict[str, tuple[set[str], int]]]:
    """Per position and class, the characters of that class any value holds there, and how many
    values hold one (pooled over templates, so a rare template learns the common rule)."""
    out: list[dict[str, tuple[set[str], int]]] = []
    for i in range(max(len(b) for b in bodies)):
        column = [b[i] for b in bodies if len(b) > i]
        out.append({chars: ({c for c in column if c in chars}, sum(c in chars for c in column)) for chars in _CLASSES})
    return out


def _free_range(values: list[str], alphabets: tuple[str, ...]) -> tuple[int, int]:
    """The widest run of the template's positions (mixed-radix numbers) holding no real value."""
    numbers = sorted({_mixed_radix(v, alphabets) for v in values})
    space = math.prod(len(a) for a in alphabets)
    options = [(numbers[0], 0), (space - numbers[-1] - 1, numbers[-1] + 1)]
    options += [(b - a - 1, a + 1) for a, b in itertools.pairwise(numbers)]
    size, low = max(options)
    return low, size


def _mixed_radix(value: str, alphabets: tuple[str, ...]) -> int:
    number = 0
    for char, alphabet in zip(value, alphabets, strict=True):
        number = number * len(alphabet) + alphabet.index(char)
    return number


def _shaped_pattern(shape: Shape, keys: np.ndarray, seed: int) -> pl.Series:
    """Each key's template from a cycle of slots shared by weight, and a value from that
    template's free range: distinct keys get distinct values, none of them real, while the
    range lasts; past it (more entities than the range holds) values come from the rest of the
    template's space, still distinct, where they may meet a real value by chance."""
    weights = np.array([w for _, w, _, _ in shape.templates])
    slots = np.repeat(np.arange(len(weights)), np.maximum(1, np.round(weights / weights.sum() * _PATTERN_SLOTS))
                      .astype(np.int64))
    order = slots[np.argsort(_bijection(np.arange(slots.size, dtype=np.uint64), seed, slots.size))]
    rank = np.zeros(order.size, dtype=np.int64)  # each slot's number among its template's slots
    for t in range(len(weights)):
        rank[order == t] = np.arange(int((order == t).sum()))
    cycle, slot = np.divmod(keys, _U(order.size))
    chosen = order[slot.astype(np.intp)]
    out = np.empty(keys.shape[0], dtype=object)
    for t, (alphabets, _, low, size) in enumerate(shape.templates):
        rows = chosen == t
        if not rows.any():
            continue
        local = cycle[rows] * _U(int((order == t).sum())) + rank[slot[rows].astype(np.intp)].astype(np.uint64)
        space = math.prod(len(a) for a in alphabets)
        inside = local < _U(size)
        position = _bijection(np.where(inside, local, _U(0)), seed, max(size, 1)) + _U(low)
        if not inside.all():
            # past the free range: the rest of the space, in a seeded order that skips the range
            rest = max(space - size, 1)
            other = _bijection((local[~inside] - _U(size)) % _U(rest), seed, rest)
            position[~inside] = np.where(other < _U(low), other, other + _U(size))
        out[rows] = [_from_radix(int(p), alphabets) for p in position]
    return pl.Series("body", out.tolist(), dtype=pl.String)


def _from_radix(number: int, alphabets: tuple[str, ...]) -> str:
    chars = []
    for alphabet in reversed(alphabets):
        number, digit = divmod(number, len(alphabet))
        chars.append(alphabet[digit])
    return "".join(reversed(chars))


def generate(
    kind: str | None, keys: np.ndarray | pl.Series, seed: int, shape: Shape | dict[str, Any] | None = None
) -> pl.Series:
    """Identifier values per key: of the learned ``shape`` when there is one, else :func:`fake`.

    Distinct keys below the shape's free range give distinct values; a numbered shape past
    its free range grows a digit rather than repeat or meet a real value.
    """
    if shape is None:
        return fake(kind or "code", keys, seed)
    if isinstance(shape, dict):
        shape = Shape.from_json(shape)
    keys = np.asarray(keys.to_numpy() if isinstance(keys, pl.Series) else keys).astype(np.int64).view(np.uint64)
    name = kind or "code"
    if keys.shape[0] == 0:
        return pl.Series(name, [], dtype=pl.String)
    seed = child_seed(seed, "identifier", "shape")
    if shape.body == "number":
        body = _shaped_number(shape, keys, seed)
    elif shape.body == "pattern":
        body = _shaped_pattern(shape, keys, seed)
    else:
        body = _shaped_chars(shape, keys, seed)
    return pl.select(pl.lit(shape.prefix) + body).to_series().alias(name)


def _shaped_number(shape: Shape, keys: np.ndarray, seed: int) -> pl.Series:
    if shape.order == "scrambled" and shape.size > 0:
        inside = keys < _U(shape.size)
        scrambled = _bijection(np.where(inside, keys, _U(0)), seed, shape.size) + _U(shape.low)
        # Past the free range: one digit wider than any real value, still distinct per key.
        numbers = np.where(inside, scrambled, keys + _U(10**shape.width))
    else:
        numbers = keys + _U(shape.low)
    text = pl.Series(numbers.astype(np.int64)).cast(pl.String)
    return text.str.zfill(shape.width) if shape.width else text


def _bijection(keys: np.ndarray, seed: int, size: int) -> np.ndarray:
    """A seeded permutation of ``[0, size)``: a Feistel network on the next square, cycle-walked."""
    side = math.isqrt(size - 1) + 1
    out = _permute(keys, seed, side, side)
    outside = out >= _U(size)
    while outside.any():  # a square barely larger than size: few values walk, and not far
        out[outside] = _permute(out[outside], seed, side, side)
        outside = out >= _U(size)
    return out


def _shaped_chars(shape: Shape, keys: np.ndarray, seed: int) -> pl.Series:
    n = keys.shape[0]
    radices = [len(a) for a in shape.alphabets]
    # The last positions whose combined space fits 62 bits come from a bijection of the key
    # (distinct keys, distinct values); earlier ones are hashed from the key.
    split, tail_space = len(radices), 1
    while split > 0 and tail_space * radices[split - 1] <= _TAIL_SPACE:
        split -= 1
        tail_space *= radices[split]
    mat = np.empty((n, len(radices)), dtype=np.uint8)
    value = _bijection(keys % _U(tail_space), seed, tail_space) if tail_space > 1 else np.zeros(n, _U)
    for pos in range(len(radices) - 1, -1, -1):
        alphabet = np.frombuffer(shape.alphabets[pos].encode(), dtype=np.uint8)
        if pos >= split:
            digit = value % _U(radices[pos])
            value = value // _U(radices[pos])
        else:
            digit = hash64(seed, keys, pos) % _U(radices[pos])
        mat[:, pos] = alphabet[digit.astype(np.intp)]
    return _strings(mat, name="body")


def event_key(entity_no: np.ndarray, seq: np.ndarray, n_entities: int | None = None) -> np.ndarray:
    """One dense key per (entity, event): ``seq * n + entity`` for a known population, else
    the Cantor pairing; keeps a counter-shaped per-event id in a small, gap-free range."""
    e = np.asarray(entity_no).astype(np.int64)
    s = np.asarray(seq).astype(np.int64)
    if n_entities:
        return s * int(n_entities) + e
    total = e + s
    return total * (total + 1) // 2 + s
