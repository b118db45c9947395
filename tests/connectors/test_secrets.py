"""Credentials in sink URLs never show: not in errors, the summary, the manifest, the checkpoint
or the metrics, however many URL-special characters the password holds."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from streamsynth.connectors.base import SinkURL, redact

from streamsynth.cli import main

# Unencoded, as users paste them: each splits a naive URL parser somewhere else.
PASSWORDS = ["Zq9@Xv7/Kp3?Wm5#Jt2:Lr8", "Hy6%40Bn4&Cd1=Fg3@@Qs5", "Tu2/Vw8@Ab3/Cd9?token=Ef4"]


def assert_hidden(secret: str, text: str) -> None:
    pieces = [p for p in re.split(r"[@/?#:&=%]", secret) if len(p) >= 3]
    leaked = [p for p in pieces if p in text]
    assert secret not in text and not leaked, f"{leaked} of the secret shown in: {text}"


@pytest.fixture
def source(tmp_path, make_events) -> Path:
    path = tmp_path / "events.parquet"
    make_events(2_000).write_parquet(path)
    return path


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("scheme", ["kafka", "http"])
def test_a_url_carrying_a_password_is_refused_without_showing_it(source, capsys, scheme, password):
    url = f"{scheme}://alice:{password}@127.0.0.1:9/events"
    assert main(["replay", str(source), "--to", url]) == 2
    err = capsys.readouterr().err
    assert "carries credentials" in err and "alice:***@127.0.0.1:9" in err
    assert_hidden(password, err)


@pytest.mark.parametrize(("url", "message"), [
    ("file:///tmp/x.jsonl?token={s}&rotate_size=abc", "option rotate_size='abc' is not valid"),
    ("kafka://127.0.0.1:9/t?sasl_password={s}", "unknown option 'sasl_password'"),
    ("http://127.0.0.1:9/x?api_key={s}&&", "cannot parse the options 'api_key=***&&'"),
    ("http://127.0.0.1:9/x?passwd={s}&concurrency=-1", "option concurrency='-1' is not valid"),
])
def test_secret_options_are_not_echoed_in_errors(source, capsys, url, message):
    secret = "Zq9Xv7Kp3"
    assert main(["replay", str(source), "--to", url.format(s=secret)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert_hidden(secret, err)


@pytest.mark.parametrize("password", PASSWORDS)
def test_redact_hides_the_whole_password_and_keeps_the_rest(password):
    url = f"kafka://alice:{password}@broker-1:9092,broker-2:9092/topic?acks=all&api_key=K3y5ecret"
    assert redact(url) == "kafka://alice:***@broker-1:9092,broker-2:9092/topic?acks=all&api_key=***"
    parsed = SinkURL.parse(url)
    assert parsed.netloc == "broker-1:9092,broker-2:9092" and parsed.path == "/topic"
    assert parsed.without_options() == "kafka://broker-1:9092,broker-2:9092/topic"
    assert_hidden(password, parsed.scrub(f"client failed for {url} (password {password})"))
    # An '@' in a file path or an option value is not a credential.
    assert redact("file:///data/a@b.jsonl") == "file:///data/a@b.jsonl"
    assert SinkURL.parse("http://h:8/p?dead_letter=/x/a@b.jsonl").options == {"dead_letter": "/x/a@b.jsonl"}


def test_summary_manifest_checkpoint_and_metrics_never_hold_the_password(source, tmp_path):
    password = PASSWORDS[0]
    out = tmp_path / "out.jsonl"
    checkpoint = tmp_path / "ckpt.json"
    url = f"file://alice:{password}@localhost{out}"
    process = subprocess.Popen(
        [sys.executable, "-m", "streamsynth", "replay", str(source), "--to", url, "--rate", "1500",
         "--checkpoint", str(checkpoint), "--metrics-port", "0"], stderr=subprocess.PIPE, text=True)
    first = process.stderr.readline()
    port = int(re.search(r":(\d+)/metrics", first).group(1))
    time.sleep(0.6)
    scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "streamsynth_events_sent_total" in scraped
    manifest = (tmp_path / "out.jsonl.manifest.json").read_text()
    state = checkpoint.read_text()
    assert "alice:***@localhost" in err and json.loads(manifest)["sink"].startswith("file://alice:***@")
    for text in (first + err, manifest, state, scraped):
        assert_hidden(password, text)
