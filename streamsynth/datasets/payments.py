"""A seeded simulator of card payments with labelled fraud: demo training data and test fixture.

Customers and terminals on a 100x100 grid, daily and weekly cycles, amounts by merchant category,
and four fraud scenarios; in the spirit of the Le Borgne et al. fraud-detection handbook simulator.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime

import numpy as np
import polars as pl
from scipy.spatial import cKDTree

from streamsynth.errors import StreamsynthError

DEFAULT_FRAUD_RATE = 0.01

#: Values of the ``fraud_scenario`` column; index 0 is genuine.
SCENARIOS = ("none", "compromised_terminal", "cnp_credential_leak", "card_testing", "stolen_card")
NONE, COMPROMISED, CNP_LEAK, CARD_TESTING, STOLEN = range(len(SCENARIOS))
#: Share of the fraud rows each scenario contributes (compromised terminals relabel genuine rows,
#: the others add rows).
_FRAUD_SHARES = {COMPROMISED: 0.35, CNP_LEAK: 0.35, CARD_TESTING: 0.2, STOLEN: 0.1}

CHANNELS = ("pos", "contactless", "online", "atm")
POS, CONTACTLESS, ONLINE, ATM = range(len(CHANNELS))
CONTACTLESS_LIMIT = 50.0

#: Countries: the grid's three zones first, then where online buyers and fraudsters may be.
COUNTRIES = ("DE", "NL", "AT", "FR", "IE", "GB", "US", "BR", "RO", "NG", "CN", "IN", "TR")
_ABROAD = np.arange(3, len(COUNTRIES))
_ABROAD_P = np.array([0.2, 0.1, 0.15, 0.15, 0.08, 0.06, 0.06, 0.06, 0.07, 0.07], dtype=float)
_ABROAD_P /= _ABROAD_P.sum()
_ONLINE_SHARE = 0.2  # of terminals that are online merchants


@dataclass(frozen=True)
class _Category:
    name: str
    online: bool
    share: float  # of the terminals of its kind (physical or online)
    median: float  # median amount, before the customer's spending level
    sigma: float  # lognormal spread of amounts
    peaks: tuple[tuple[float, float, float], ...]  # daily cycle: (hour, width, weight)
    week: tuple[float, ...]  # relative volume Monday..Sunday (max 1)


_WORKWEEK, _ALL_WEEK = (1.0,) * 5, (1.0,) * 7
_CATEGORIES = (
    # name, online, share, median, sigma, daily peaks (hour, width, weight), Monday..Sunday
    _Category("grocery", False, 0.25, 32, 0.6, ((11, 2, 0.6), (17.5, 2, 1)),
              (0.9, 0.9, 0.9, 0.9, 1, 1, 0.1)),
    _Category("restaurant", False, 0.18, 28, 0.5, ((12.5, 1, 1), (19.5, 1.5, 1.2)),
              (0.7, 0.7, 0.75, 0.8, 1, 1, 0.9)),
    _Category("fuel", False, 0.1, 55, 0.35, ((8, 1.5, 0.8), (17, 2, 1)), _WORKWEEK + (0.8, 0.6)),
    _Category("pharmacy", False, 0.07, 18, 0.6, ((10, 2, 0.8), (16, 2.5, 1)),
              _WORKWEEK + (0.7, 0.1)),
    _Category("clothing", False, 0.1, 60, 0.7, ((12, 2, 0.8), (16, 2.5, 1)),
              (0.7, 0.7, 0.7, 0.8, 0.9, 1, 0.05)),
    _Category("electronics", False, 0.05, 180, 0.9, ((12, 2, 0.8), (17, 2.5, 1)),
              (0.7, 0.7, 0.7, 0.8, 0.9, 1, 0.05)),
    _Category("travel", False, 0.03, 320, 0.8, ((9, 2, 1), (15, 3, 0.6)), _WORKWEEK + (0.8, 0.8)),
    _Category("entertainment", False, 0.1, 35, 0.6, ((14, 2, 0.4), (20, 2, 1)),
              (0.5, 0.5, 0.6, 0.7, 1, 1, 0.8)),
    _Category("atm", False, 0.12, 100, 0.6, ((12, 3, 1), (18, 2, 0.8)), _WORKWEEK + (0.9, 0.7)),
    _Category("online_retail", True, 0.5, 45, 0.8, ((13, 3, 0.7), (21, 2, 1)),
              (0.9, 0.9, 0.9, 0.9, 0.9, 0.85, 1)),
    _Category("gaming", True, 0.2, 15, 0.9, ((1, 2, 0.4), (21, 2.5, 1)),
              (0.7, 0.7, 0.7, 0.75, 0.9, 1, 1)),
    _Category("digital_services", True, 0.2, 12, 0.5, ((20, 3, 1),), _ALL_WEEK),
    _Category("travel", True, 0.1, 280, 0.8, ((11, 3, 1), (20, 2, 0.8)), _ALL_WEEK),
)
_ATM = next(i for i, c in enumerate(_CATEGORIES) if c.name == "atm")
_CAT_NAMES = [c.name for c in _CATEGORIES]
_CAT_ONLINE = np.array([c.online for c in _CATEGORIES])
_MEDIAN = np.array([c.median for c in _CATEGORIES], dtype=float)
_SIGMA = np.array([c.sigma for c in _CATEGORIES], dtype=float)
_WEEK = np.array([c.week for c in _CATEGORIES], dtype=float)


def _hour_profile(peaks: tuple[tuple[float, float, float], ...], shift: float) -> np.ndarray:
    """Probabilities of the 24 hours: a low night floor plus circular bumps at the peaks."""
    hours = np.arange(24) + 0.5
    p = np.full(24, 0.015)
    for hour, width, weight in peaks:
        d = np.abs(hours - hour - shift)
        d = np.minimum(d, 24 - d)
        p += weight * np.exp(-0.5 * (d / width) ** 2)
    return p / p.sum()


# Cumulative hour profiles by (category, weekend): weekends start about an hour later.
_HOUR_CDF = np.array(
    [np.cumsum(_hour_profile(c.peaks, shift)) for c in _CATEGORIES for shift in (0.0, 1.0)]
)
# Fraudsters keep no office hours: flat with a bump in the small hours.
_FRAUD_HOUR_CDF = np.cumsum(_hour_profile(((3, 2.5, 0.5), (14, 6, 0.5)), 0.0))[None, :]


@dataclass
class _Terminals:
    category: np.ndarray  # index into _CATEGORIES
    online: np.ndarray
    x: np.ndarray
    y: np.ndarray
    country: np.ndarray


@dataclass
class _Customers:
    x: np.ndarray
    y: np.ndarray
    country: np.ndarray
    rate: np.ndarray  # transactions per day
    spend: np.ndarray  # multiplier on category medians
    spread: np.ndarray  # multiplier on category sigmas
    p_online: np.ndarray
    p_contactless: np.ndarray
    shops: np.ndarray  # (n, k) favourite physical terminals
    shops_cdf: np.ndarray  # (n, k) cumulative choice probabilities
    sites: np.ndarray  # (n, k) favourite online terminals
    sites_cdf: np.ndarray
    card: np.ndarray  # int64, 16 digits


@dataclass
class _Tx:
    """Transactions as parallel arrays; ``t`` is seconds since midnight of the first day."""

    cust: np.ndarray
    term: np.ndarray
    t: np.ndarray
    amount: np.ndarray
    channel: np.ndarray
    country: np.ndarray
    scenario: np.ndarray

    def select(self, mask: np.ndarray) -> _Tx:
        return _Tx(**{f.name: getattr(self, f.name)[mask] for f in fields(self)})

    @staticmethod
    def concat(parts: list[_Tx]) -> _Tx:
        return _Tx(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(_Tx)}
        )


def payments(
    n_customers: int = 2000,
    n_terminals: int = 500,
    n_days: int = 30,
    start: str | datetime = "2024-01-01",
    seed: int = 0,
    fraud_rate: float | None = None,
) -> pl.DataFrame:
    """Simulate ``n_days`` of card payments, one row per transaction, sorted by ``ts``.

    Columns: tx_id, ts (UTC), customer_id, card_number (Luhn-valid, one per customer),
    terminal_id, merchant_category, amount, channel, country (where the card was used; for
    online payments, where the buyer was), is_fraud, fraud_scenario (one of ``SCENARIOS``).
    ``start`` is the first day (its time of day is ignored; the daily cycle is in UTC).
    ``fraud_rate`` is the target share of fraud rows (default 1%); the result is close to it,
    not exact. The same arguments always give the same frame.
    """
    _check_int("n_customers", n_customers, 1)
    _check_int("n_terminals", n_terminals, 2)
    _check_int("n_days", n_days, 1)
    _check_int("seed", seed, 0)
    rate = DEFAULT_FRAUD_RATE if fraud_rate is None else fraud_rate
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < 1:
        raise StreamsynthError(
            f"fraud_rate is {fraud_rate!r}", hint="give a share in [0, 1), e.g. 0.01, or None"
        )
    origin = _origin(start)
    rng = np.random.default_rng(seed)
    terminals = _make_terminals(rng, n_terminals)
    customers = _make_customers(rng, n_customers, terminals)
    tx = _genuine(rng, customers, terminals, n_days, origin.weekday())
    tx = _add_fraud(rng, tx, customers, terminals, n_days, float(rate))
    return _to_frame(tx, customers, terminals, origin)


# -- arguments -----------------------------------------------------------------------------
def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise StreamsynthError(f"{name} is {value!r}", hint=f"give an integer of at least {low}")


def _origin(start: str | datetime) -> datetime:
    if isinstance(start, str):
        try:
            start = datetime.fromisoformat(start)
        except ValueError:
            raise StreamsynthError(
                f"start is {start!r}, not an ISO date", hint="write it like 2024-01-01"
            ) from None
    if not isinstance(start, datetime):
        raise StreamsynthError(f"start is {start!r}", hint="give an ISO date string or a datetime")
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    return start.replace(hour=0, minute=0, second=0, microsecond=0)


# -- population ----------------------------------------------------------------------------
def _zone(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Country index of grid points: most of the grid is DE, two border strips NL and AT."""
    return np.where(x < 88, 0, np.where(y < 50, 1, 2)).astype(np.int16)


def _make_terminals(rng: np.random.Generator, n: int) -> _Terminals:
    online = np.zeros(n, dtype=bool)
    online[: max(1, round(n * _ONLINE_SHARE))] = True
    online = rng.permutation(online)
    category = np.empty(n, dtype=np.int16)
    for is_online in (False, True):
        kinds = np.flatnonzero(_CAT_ONLINE == is_online)
        shares = np.array([_CATEGORIES[k].share for k in kinds])
        mask = online == is_online
        category[mask] = rng.choice(kinds, size=int(mask.sum()), p=shares / shares.sum())
    x, y = rng.uniform(0, 100, n), rng.uniform(0, 100, n)
    return _Terminals(category=category, online=online, x=x, y=y, country=_zone(x, y))


def _preferences(
    rng: np.random.Generator, chosen: np.ndarray, popularity: np.ndarray
) -> np.ndarray:
    """Per customer, cumulative probabilities of using each favourite terminal."""
    prefs = rng.gamma(0.8, 1.0, size=chosen.shape) * popularity[chosen] + 1e-9
    cdf = np.cumsum(prefs, axis=1)
    return cdf / cdf[:, -1:]


def _make_customers(rng: np.random.Generator, n: int, terminals: _Terminals) -> _Customers:
    x, y = rng.uniform(0, 100, n), rng.uniform(0, 100, n)
    shops_idx = np.flatnonzero(~terminals.online)
    sites_idx = np.flatnonzero(terminals.online)
    popularity = rng.lognormal(0.0, 0.5, terminals.online.size)
    # Favourite shops: most among the nearest ones to home (Gumbel top-k by popularity and
    # distance), one anywhere on the map (near work, family).
    n_near = min(24, shops_idx.size)
    tree = cKDTree(np.column_stack([terminals.x[shops_idx], terminals.y[shops_idx]]))
    dist, near = tree.query(np.column_stack([x, y]), k=n_near)
    dist, near = dist.reshape(n, n_near), near.reshape(n, n_near)
    keys = np.log(popularity[shops_idx[near]]) - dist / 6.0 + rng.gumbel(size=near.shape)
    k_near = min(10, n_near)
    top = np.take_along_axis(near, np.argpartition(-keys, k_near - 1, axis=1)[:, :k_near], axis=1)
    far = rng.integers(0, shops_idx.size, (n, 1))
    shops = shops_idx[np.concatenate([top, far], axis=1)]
    site_p = popularity[sites_idx] / popularity[sites_idx].sum()
    sites = rng.choice(sites_idx, size=(n, 4), p=site_p)
    return _Customers(
        x=x,
        y=y,
        country=_zone(x, y),
        rate=rng.gamma(2.0, 1.4, n),
        spend=rng.lognormal(0.0, 0.35, n),
        spread=rng.uniform(0.8, 1.25, n),
        p_online=rng.beta(2.0, 7.0, n),
        p_contactless=rng.beta(5.0, 3.0, n),
        shops=shops,
        shops_cdf=_preferences(rng, shops, popularity),
        sites=sites,
        sites_cdf=_preferences(rng, sites, popularity),
        card=_card_numbers(rng, n),
    )


def _card_numbers(rng: np.random.Generator, n: int) -> np.ndarray:
    """Distinct Luhn-valid 16-digit numbers: a few made-up 6-digit prefixes + 9-digit accounts."""
    prefixes = rng.integers(0, 100_000, 6) + np.array([4, 4, 4, 5, 5, 2]) * 100_000
    prefix = rng.choice(prefixes, n)
    # An affine map mod 10**9 with a multiplier coprime to 10 is a bijection: no duplicates.
    mult = int(rng.integers(10**8, 10**9)) | 1
    if mult % 5 == 0:
        mult += 2
    account = (np.arange(n, dtype=np.int64) * mult + int(rng.integers(0, 10**9))) % 10**9
    body = prefix.astype(np.int64) * 10**9 + account  # 15 digits
    digits = (body[:, None] // 10 ** np.arange(14, -1, -1, dtype=np.int64)) % 10
    # The check digit goes on the right, so the body's odd positions (from the left) double.
    doubled = digits[:, 0::2] * 2
    total = (doubled - 9 * (doubled > 9)).sum(axis=1) + digits[:, 1::2].sum(axis=1)
    return body * 10 + (10 - total % 10) % 10


# -- genuine transactions --------------------------------------------------------------------
def _pick(cdf: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Per element, the column of ``cdf[rows]`` that ``u`` falls into (a row-wise searchsorted)."""
    width = cdf.shape[1]
    # Offsetting row r's cdf by r turns one flat searchsorted into a row-wise one.
    flat = (cdf + np.arange(cdf.shape[0])[:, None]).ravel()
    col = np.searchsorted(flat, u + rows, side="right") - rows * width
    return np.clip(col, 0, width - 1)


def _amounts(
    rng: np.random.Generator, category: np.ndarray, spend: np.ndarray, spread: np.ndarray
) -> np.ndarray:
    sigma = _SIGMA[category] * spread
    amount = _MEDIAN[category] * spend * np.exp(sigma * rng.standard_normal(category.size))
    tail = rng.random(category.size) < 0.01  # an occasional big-ticket purchase
    amount[tail] *= 1.0 + rng.pareto(2.0, int(tail.sum()))
    atm = category == _ATM
    amount[atm] = np.clip(np.round(amount[atm] / 10.0) * 10.0, 20.0, 1000.0)
    return np.maximum(np.round(amount, 2), 0.99)


def _abroad(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(_ABROAD, size=n, p=_ABROAD_P).astype(np.int16)


def _genuine(
    rng: np.random.Generator, cust: _Customers, term: _Terminals, n_days: int, dow0: int
) -> _Tx:
    n_cust = cust.rate.size
    counts = rng.poisson(cust.rate * n_days)
    who = np.repeat(np.arange(n_cust), counts)
    n = who.size
    day = rng.integers(0, n_days, n)
    online = rng.random(n) < cust.p_online[who]
    shop = cust.shops[who, _pick(cust.shops_cdf, who, rng.random(n))]
    site = cust.sites[who, _pick(cust.sites_cdf, who, rng.random(n))]
    where = np.where(online, site, shop)
    category = term.category[where]
    dow = (dow0 + day) % 7
    # Weekly cycle: thin each category by its weekday volume (most shops are shut on Sunday).
    keep = rng.random(n) < _WEEK[category, dow]
    who, day, where, category, dow = who[keep], day[keep], where[keep], category[keep], dow[keep]
    n = who.size
    group = category.astype(np.int64) * 2 + (dow >= 5)
    hour = _pick(_HOUR_CDF, group, rng.random(n))
    t = day * 86400.0 + hour * 3600.0 + rng.random(n) * 3600.0
    amount = _amounts(rng, category, cust.spend[who], cust.spread[who])
    # Above the contactless limit a card-present payment needs chip and PIN.
    tap = (rng.random(n) < cust.p_contactless[who]) & (amount <= CONTACTLESS_LIMIT)
    channel = np.where(tap, CONTACTLESS, POS)
    channel = np.where(category == _ATM, ATM, np.where(term.online[where], ONLINE, channel))
    # Card-present: the terminal's country; online: where the buyer is, nearly always home.
    away = rng.random(n) < 0.05
    country = np.where(term.online[where], cust.country[who], term.country[where])
    country = np.where(term.online[where] & away, _abroad(rng, n), country)
    return _Tx(
        cust=who,
        term=where,
        t=t,
        amount=amount,
        channel=channel.astype(np.int8),
        country=country.astype(np.int16),
        scenario=np.zeros(n, dtype=np.int8),
    )


# -- fraud -----------------------------------------------------------------------------------
def _prefix_within(rng: np.random.Generator, counts: np.ndarray, budget: float) -> int:
    """How many leading cases to take so their rows meet ``budget`` on average.

    Whole cases fit while they can; the next one is taken with the probability of the budget
    left over, so small populations get the target fraud rate in expectation, not a floor.
    """
    cum = np.cumsum(counts)
    taken = int(np.searchsorted(cum, budget, side="right"))
    rest = np.flatnonzero(counts[taken:])
    if rest.size:
        left = budget - (cum[taken - 1] if taken else 0.0)
        if rng.random() < left / counts[taken + rest[0]]:
            taken += int(rest[0]) + 1
    return taken


def _cases(rng: np.random.Generator, budget: float, mean_size: float) -> int:
    """A case count whose expected rows match ``budget`` (stochastic rounding)."""
    expected = budget / mean_size
    return int(expected) + int(rng.random() < expected - int(expected))


def _spans(rng: np.random.Generator, sizes: np.ndarray, mean_gap: float) -> np.ndarray:
    """Offsets in seconds of events in bursts of ``sizes`` (all > 0): 0, then exponential gaps."""
    cum = np.cumsum(rng.exponential(mean_gap, int(sizes.sum())))
    starts = np.cumsum(sizes) - sizes
    return cum - np.repeat(cum[starts], sizes)


def _add_fraud(
    rng: np.random.Generator, tx: _Tx, cust: _Customers, term: _Terminals, n_days: int, rate: float
) -> _Tx:
    if rate == 0 or tx.cust.size == 0:
        return tx
    added_share = 1.0 - _FRAUD_SHARES[COMPROMISED]
    target = rate * tx.cust.size / (1.0 - rate * added_share)
    budget = {k: share * target for k, share in _FRAUD_SHARES.items()}
    n_cust, horizon = cust.rate.size, n_days * 86400.0
    shops = np.flatnonzero(~term.online)
    sites = np.flatnonzero(term.online)

    # Compromised terminals: every transaction there during the window is fraud.
    begin = rng.integers(0, n_days, term.online.size)
    length = rng.integers(7, 22, term.online.size)
    day = (tx.t // 86400).astype(np.int64)
    in_window = (day >= begin[tx.term]) & (day < begin[tx.term] + length[tx.term])
    counts = np.bincount(tx.term[in_window], minlength=term.online.size)
    order = rng.permutation(shops)
    hit = order[: _prefix_within(rng, counts[order], budget[COMPROMISED])]
    tx.scenario[in_window & np.isin(tx.term, hit)] = COMPROMISED

    # Card-not-present credential leak: for some days, online buys at inflated amounts.
    length = np.minimum(rng.integers(3, 11, n_cust), n_days)
    begin = rng.integers(0, n_days - length + 1)
    per_day = rng.uniform(1.0, 3.0, n_cust)
    victims = rng.permutation(n_cust)
    counts = rng.poisson(per_day * length)[victims]
    victims = victims[: _prefix_within(rng, counts, budget[CNP_LEAK])]
    sizes = counts[: victims.size]
    who = np.repeat(victims, sizes)
    n = who.size
    day = begin[who] + (rng.random(n) * length[who]).astype(np.int64)
    hour = _pick(_FRAUD_HOUR_CDF, np.zeros(n, dtype=np.int64), rng.random(n))
    where = rng.choice(sites, n)
    amount = _amounts(rng, term.category[where], cust.spend[who], cust.spread[who])
    leak = _Tx(
        cust=who,
        term=where,
        t=day * 86400.0 + hour * 3600.0 + rng.random(n) * 3600.0,
        amount=np.round(amount * rng.uniform(2.0, 5.0, n), 2),
        channel=np.full(n, ONLINE, dtype=np.int8),
        country=np.where(rng.random(n) < 0.7, _abroad(rng, n), cust.country[who]),
        scenario=np.full(n, CNP_LEAK, dtype=np.int8),
    )

    # Card testing: a burst of tiny online payments seconds apart at one merchant.
    cases = _cases(rng, budget[CARD_TESTING], 13.0)
    sizes = rng.integers(6, 21, cases)
    who = np.repeat(rng.integers(0, n_cust, cases), sizes)
    n = who.size
    t0 = rng.uniform(0, max(horizon - 3600.0, 1.0), cases)
    testing = _Tx(
        cust=who,
        term=np.repeat(rng.choice(sites, cases), sizes),
        t=np.minimum(np.repeat(t0, sizes) + _spans(rng, sizes, 20.0), horizon - 1.0),
        amount=np.round(rng.uniform(0.5, 3.0, n), 2),
        channel=np.full(n, ONLINE, dtype=np.int8),
        country=np.repeat(_abroad(rng, cases), sizes),
        scenario=np.full(n, CARD_TESTING, dtype=np.int8),
    )

    # Stolen card: a spree of contactless taps under the limit at shops all over the map.
    cases = _cases(rng, budget[STOLEN], 5.5)
    sizes = rng.integers(3, 9, cases)
    who = np.repeat(rng.integers(0, n_cust, cases), sizes)
    n = who.size
    taps = shops[term.category[shops] != _ATM]
    where = rng.choice(taps if taps.size else shops, n)
    t0 = rng.uniform(0, max(horizon - 4 * 3600.0, 1.0), cases)
    stolen = _Tx(
        cust=who,
        term=where,
        t=np.minimum(np.repeat(t0, sizes) + _spans(rng, sizes, 720.0), horizon - 1.0),
        amount=np.round(rng.uniform(15.0, CONTACTLESS_LIMIT - 0.01, n), 2),
        channel=np.full(n, CONTACTLESS, dtype=np.int8),
        country=term.country[where],
        scenario=np.full(n, STOLEN, dtype=np.int8),
    )
    return _Tx.concat([tx, leak, testing, stolen])


# -- output ----------------------------------------------------------------------------------
def _ids(prefix: str, values: np.ndarray, count: int) -> pl.Series:
    width = max(len(str(count - 1)), 5)
    return pl.select(
        pl.concat_str(pl.lit(prefix), pl.Series(values).cast(pl.String).str.zfill(width))
    ).to_series()


def _to_frame(tx: _Tx, cust: _Customers, term: _Terminals, origin: datetime) -> pl.DataFrame:
    micros = np.round(tx.t * 1e6).astype(np.int64) + int(origin.timestamp()) * 1_000_000
    order = np.argsort(micros, kind="stable")
    tx = tx.select(order)
    return pl.DataFrame(
        {
            "tx_id": _ids("TX", np.arange(order.size), max(order.size, 10**10)),
            "ts": pl.Series(micros[order]).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
            "customer_id": _ids("C", tx.cust, max(cust.rate.size, 10**6)),
            "card_number": pl.Series(cust.card[tx.cust]).cast(pl.String),
            "terminal_id": _ids("T", tx.term, term.online.size),
            "merchant_category": pl.Series(_CAT_NAMES).gather(term.category[tx.term]),
            "amount": pl.Series(tx.amount, dtype=pl.Float64),
            "channel": pl.Series(CHANNELS).gather(tx.channel),
            "country": pl.Series(COUNTRIES).gather(tx.country),
            "is_fraud": pl.Series(tx.scenario != NONE, dtype=pl.Boolean),
            "fraud_scenario": pl.Series(SCENARIOS).gather(tx.scenario),
        }
    )
