"""Stopping a replay by signal, through a real subprocess: with the broker down (a bounded flush,
the unacknowledged events counted), a second signal (at once, no traceback), a signal during
start-up (a manifest all the same), and two replays on one checkpoint (the second refused)."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from replay_process import start, wait_for_position

SLOW_START = "kafka://127.0.0.1:{port}/t?connect_timeout=20s"


def wait_for_line(process: subprocess.Popen, text: str) -> str:
    """Read stderr up to the line holding ``text`` (the rest stays for communicate())."""
    while line := process.stderr.readline():
        if text in line:
            return line
    raise AssertionError(f"no line with {text!r}; exit code {process.wait()}")


def no_traceback(err: str) -> None:
    assert "Traceback" not in err and "Error:" not in err.replace("error:", ""), err


def stop_by(process: subprocess.Popen, sig: int, code: int) -> tuple[str, float]:
    """Send ``sig`` and wait: the replay must exit with ``code`` and no traceback. Returns its
    stderr and the seconds from the signal to the exit."""
    signalled = time.monotonic()
    process.send_signal(sig)
    _, err = process.communicate(timeout=30)
    took = time.monotonic() - signalled
    assert process.returncode == code, err
    no_traceback(err)
    return err, took


@pytest.fixture
def source(tmp_path, make_events) -> Path:
    path = tmp_path / "events.parquet"
    make_events(40_000).write_parquet(path)
    return path


def replay_into_outage(proxied_broker, source: Path, tmp_path: Path, *extra: str,
                       client: str = "kafka-python"):
    """A paced replay through the proxy, cut once the checkpoint shows progress."""
    _broker, proxy = proxied_broker
    checkpoint, manifest = tmp_path / "ckpt.json", tmp_path / "m.json"
    to = f"kafka://{proxy.address}/t-{uuid.uuid4().hex[:8]}?client={client}"
    process = start(source, to, "--rate", "4000",
                    "--checkpoint", str(checkpoint), "--manifest", str(manifest),
                    "--flush-every", "0.2", *extra)
    wait_for_position(checkpoint, above=1_000)
    proxy.cut()
    time.sleep(0.6)  # events now pile up unacknowledged
    return process, checkpoint, manifest


@pytest.mark.parametrize("client", [
    "kafka-python",
    pytest.param("confluent", marks=pytest.mark.skipif(
        importlib.util.find_spec("confluent_kafka") is None, reason="confluent-kafka is not installed")),
])
def test_broker_down_at_shutdown_the_first_signal_flushes_for_the_timeout_then_exits(
        proxied_broker, source, tmp_path, client):
    process, checkpoint, manifest = replay_into_outage(proxied_broker, source, tmp_path,
                                                       "--shutdown-timeout", "2", client=client)
    err, took = stop_by(process, signal.SIGTERM, 1)
    assert 1.8 <= took <= 8, f"the shutdown took {took:.1f} s with a 2 s timeout"
    last = err.strip().splitlines()[-1]
    assert "not acknowledged within the 2 s shutdown timeout" in last and "resume with" in last
    record = json.loads(manifest.read_text())
    state = json.loads(checkpoint.read_text())
    assert record["ended"] == "stopped" and record["replay"]["unacknowledged"] > 0
    assert record["sent"]["to"] == state["position"] > 1_000 and not state["done"]
    assert record["outages"]["count"] == 1 and not record["outages"]["log"][0]["ended"]


def test_a_second_signal_exits_at_once_without_a_traceback(proxied_broker, source, tmp_path):
    process, checkpoint, manifest = replay_into_outage(proxied_broker, source, tmp_path,
                                                       "--shutdown-timeout", "60")
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    err, took = stop_by(process, signal.SIGINT, 130)
    assert took < 5
    assert "stopped at once by a second SIGINT: position" in err.strip().splitlines()[-1]
    state = json.loads(checkpoint.read_text())  # whole, and where the acknowledgements stopped
    assert state["position"] > 1_000 and not state["done"]
    record = json.loads(manifest.read_text())
    assert record["ended"] == "aborted" and record["sent"]["to"] == state["position"]


def test_a_signal_during_start_up_still_writes_the_manifest(source, tmp_path, free_port):
    """The sink's connect is slow (nothing listens); the signal comes while it waits."""
    manifest = tmp_path / "m.json"
    process = start(source, SLOW_START.format(port=free_port()), "--manifest", str(manifest),
                    "--metrics-port", "0")
    wait_for_line(process, "metrics on http://")  # the handlers are in place before this line
    time.sleep(0.3)
    err, took = stop_by(process, signal.SIGTERM, 130)
    assert took < 5
    assert "stopped at once by SIGTERM: position 0 acknowledged" in err
    record = json.loads(manifest.read_text())
    assert record["ended"] == "aborted" and record["sent"] == {"from": 0, "to": 0}


def test_two_replays_cannot_share_a_checkpoint_and_a_killed_ones_lock_does_not_linger(
        source, tmp_path):
    checkpoint = tmp_path / "ckpt.json"
    out = tmp_path / "out.jsonl"
    args = (source, str(out), "--rate", "4000", "--checkpoint", str(checkpoint), "--flush-every", "0.2")
    first = start(*args)
    wait_for_position(checkpoint)
    second = start(*args)
    _, err = second.communicate(timeout=30)
    assert second.returncode == 2
    assert f"checkpoint {checkpoint} is in use by another replay (process {first.pid})" in err
    no_traceback(err)
    first.kill()  # a crash: the kernel drops its lock
    first.communicate(timeout=30)
    third = start(source, str(out), "--checkpoint", str(checkpoint))
    _, err = third.communicate(timeout=60)
    assert third.returncode == 0 and "resuming after" in err, err
    # a run that ends normally takes its lock file with it
    assert not checkpoint.with_name(checkpoint.name + ".lock").exists()


def test_an_endpoint_failing_at_shutdown_does_not_hold_it_past_the_timeout(receiver, source, tmp_path):
    """HTTP: retries with backoff would go on for minutes; the stop bounds them too."""
    checkpoint, manifest = tmp_path / "ckpt.json", tmp_path / "m.json"
    url = receiver.url(batch=200, retries=10_000, backoff="50ms", max_backoff="200ms")
    process = start(source, url, "--rate", "4000", "--checkpoint", str(checkpoint), "--manifest",
                    str(manifest), "--flush-every", "0.2", "--shutdown-timeout", "1")
    wait_for_position(checkpoint, above=1_000)
    receiver.fail_always = 503
    time.sleep(0.5)
    err, took = stop_by(process, signal.SIGTERM, 1)
    assert took < 6
    record = json.loads(manifest.read_text())
    assert record["replay"]["unacknowledged"] > 0
    assert record["sent"]["to"] == json.loads(checkpoint.read_text())["position"]
    assert len(set(receiver.ids())) >= record["sent"]["to"]  # everything acknowledged arrived
