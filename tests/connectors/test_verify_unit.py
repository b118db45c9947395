"""Unit tests of delivery reconciliation (:mod:`streamsynth.connectors.verify`) on small hand-made
frames: exact counts, examples, and the missing ids told as ranges per entity."""

from __future__ import annotations

import polars as pl
import pytest
from streamsynth.connectors.verify import MAX_RANGES, VerifyReport, id_ranges, reconcile

from streamsynth.contract import EVENT_ID, LABEL


def _events(ids: list[str], labels: list[str] | None = None, **extra) -> pl.DataFrame:
    labels = labels if labels is not None else ["normal"] * len(ids)
    return pl.DataFrame({EVENT_ID: ids, LABEL: labels, **extra})


def _sent() -> pl.DataFrame:
    # entity 1: events 0..9, entity 2: events 0..4; event 1-3 is a fraud
    ids = [f"pay-1-{n}" for n in range(10)] + [f"pay-2-{n}" for n in range(5)]
    labels = ["fraud" if i == "pay-1-3" else "normal" for i in ids]
    return _events(ids, labels)


def test_everything_received_once_is_ok():
    sent = _sent()
    report = reconcile([sent], [sent.sample(fraction=1.0, shuffle=True, seed=1)])
    assert (report.expected, report.received) == (15, 15)
    assert (report.missing, report.duplicated, report.mislabelled, report.unexpected, report.header_mismatch) == (
        0, 0, 0, 0, 0)
    assert report.ok and not report.lost
    assert report.examples == {} and report.missing_ranges == [] and report.missing_ranges_total == 0


def test_missing_events_are_named_as_ranges_per_entity():
    sent = _sent()
    lost = {"pay-1-2", "pay-1-3", "pay-1-4", "pay-1-5", "pay-1-8", "pay-2-0", "pay-2-1"}
    received = sent.filter(~pl.col(EVENT_ID).is_in(list(lost)))
    # delivered in several frames, out of order
    report = reconcile([sent.head(7), sent.tail(8)], [received.tail(3), received.head(5)])
    assert report.expected == 15 and report.received == 8
    assert report.missing == 7 and report.lost and not report.ok
    assert (report.duplicated, report.mislabelled, report.unexpected) == (0, 0, 0)
    # the largest range first, then by entity and start
    assert report.missing_ranges == ["pay-1-[2..5]", "pay-2-[0..1]", "pay-1-8"]
    assert report.missing_ranges_total == 3
    assert set(report.examples["missing"]) <= lost and len(report.examples["missing"]) == 5


def test_duplicates_are_counted_once_per_id_and_allowed():
    sent = _sent()
    received = pl.concat([sent, sent.filter(pl.col(EVENT_ID).is_in(["pay-1-0", "pay-2-4"])),
                          sent.filter(pl.col(EVENT_ID) == "pay-1-0")])
    report = reconcile([sent], [received])
    assert report.received == 18
    assert report.duplicated == 2  # ids, not extra copies
    assert sorted(report.examples["duplicated"]) == ["pay-1-0", "pay-2-4"]
    assert report.missing == 0 and report.ok  # at-least-once delivery is fine


def test_mislabelled_unexpected_and_header_mismatch():
    sent = _sent()
    received = sent.with_columns(
        pl.when(pl.col(EVENT_ID) == "pay-1-3").then(pl.lit("normal")).otherwise(pl.col(LABEL)).alias(LABEL))
    received = pl.concat([received, _events(["pay-9-0", "stray"])])
    headers = received[LABEL].to_list()
    headers[0] = "fraud"  # pay-1-0's header disagrees with its value
    received = received.with_columns(header_label=pl.Series(headers))
    report = reconcile([sent], [received])
    assert report.mislabelled == 1 and report.examples["mislabelled"] == ["pay-1-3"]
    assert report.unexpected == 2 and sorted(report.examples["unexpected"]) == ["pay-9-0", "stray"]
    assert report.header_mismatch == 1 and report.examples["header_mismatch"] == ["pay-1-0"]
    assert report.missing == 0 and not report.ok


def test_copies_with_different_labels_count_as_mislabelled():
    sent = _sent()
    received = pl.concat([sent, _events(["pay-2-2"], ["fraud"])])
    report = reconcile([sent], [received])
    assert report.duplicated == 1 and report.mislabelled == 1
    assert report.examples["mislabelled"] == ["pay-2-2"] and not report.ok


def test_nothing_received():
    report = reconcile([_sent()], [])
    assert report.missing == 15 and report.received == 0
    assert report.missing_ranges == ["pay-1-[0..9]", "pay-2-[0..4]"]


def test_nothing_sent_and_nothing_received():
    report = reconcile([], [pl.DataFrame({EVENT_ID: [], LABEL: []}, schema={EVENT_ID: pl.String, LABEL: pl.String})])
    assert (report.expected, report.received, report.missing) == (0, 0, 0) and report.ok


def test_integer_ids_are_compared_as_strings():
    sent = pl.DataFrame({EVENT_ID: [1, 2, 3], LABEL: ["a", "b", "a"]})
    received = pl.DataFrame({EVENT_ID: ["1", "3"], LABEL: ["a", "a"]})
    report = reconcile([sent], [received])
    assert report.missing == 1 and report.examples["missing"] == ["2"]
    assert report.missing_ranges == ["2"]  # no prefix: told as it is


def test_examples_are_capped():
    sent = _events([f"e-{n}" for n in range(0, 40, 2)])  # no two consecutive
    report = reconcile([sent], [], n_examples=3)
    assert len(report.examples["missing"]) == 3
    assert report.missing_ranges_total == 20 and len(report.missing_ranges) == MAX_RANGES


def test_to_dict_carries_ok():
    report = VerifyReport(expected=2, received=1, missing=1, duplicated=0, mislabelled=0, unexpected=0)
    d = report.to_dict()
    assert d["ok"] is False and d["missing"] == 1 and d["missing_ranges"] == []


def test_id_ranges_numeric_order_limit_and_loose_ids():
    ids = pl.Series(["a-10", "a-9", "a-8", "a-100", "b-1", "b-3", "b-2", "x", "row-7", "c-5"])
    shown, total = id_ranges(ids, limit=10)
    # 8,9,10 consecutive numerically (not by string); 100 stands alone
    assert shown == ["a-[8..10]", "b-[1..3]", "a-100", "c-5", "row-7", "x"]
    assert total == 6
    shown, total = id_ranges(ids, limit=2)
    assert shown == ["a-[8..10]", "b-[1..3]"] and total == 6
    assert id_ranges(pl.Series([], dtype=pl.String)) == ([], 0)


@pytest.mark.parametrize("ids,want", [
    (["pay-17-120", "pay-17-121", "pay-17-122"], ["pay-17-[120..122]"]),
    (["pay-1-5", "pay-2-6"], ["pay-1-5", "pay-2-6"]),  # consecutive numbers, different entities
])
def test_id_ranges_split_by_entity(ids, want):
    assert id_ranges(pl.Series(ids))[0] == want


def test_an_event_received_without_its_label_is_mislabelled():
    sent = _events(["e-1", "e-2"], ["fraud", "normal"])
    received = pl.DataFrame({EVENT_ID: ["e-1", "e-2"], LABEL: [None, "normal"]},
                            schema={EVENT_ID: pl.String, LABEL: pl.String})
    report = reconcile([sent], [received])
    assert report.mislabelled == 1 and not report.ok


def test_id_ranges_keep_zero_padded_ids_as_they_are():
    shown, total = id_ranges(pl.Series(["evt-0007", "evt-0008", "evt-0009"]))
    assert total == 1
    assert shown[0] in ("evt-[0007..0009]", "evt-0007..evt-0009")
