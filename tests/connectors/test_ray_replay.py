"""Replay on Ray (``replay --ray --workers N``, ``streamsynth.ray_replay``) into the tansu broker:
two workers deliver every event of the unsharded sample exactly once with its labels; a worker
killed mid-replay is restarted by Ray and resumes from its checkpoint (verify: nothing missing,
duplicates within a flush interval); a stop flushes every worker and the merged manifest adds
up (and a second run resumes); the options that need --ray are refused without it.

One local Ray runtime (2 CPUs, no dashboard) serves the module; its tests skip when Ray is not
installed, the usage errors run either way.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from streamsynth.connectors import read_back
from streamsynth.connectors.job import ReplaySettings
from streamsynth.connectors.verify import reconcile

from streamsynth.cli import main
from streamsynth.cli.source_options import SourceOptions
from streamsynth.contract import EVENT_ID, LABEL

RULES = Path(__file__).resolve().parents[2] / "streamsynth" / "rules" / "examples" / "payments.yaml"
#: about 4,500 events of 1,000 customers, some 60 of them fraud
SOURCE = ("--entities", "1000", "--end", "2024-05-02T00:00:00Z")


@pytest.fixture(scope="module")
def unsharded(tmp_path_factory) -> pl.DataFrame:
    """The unsharded sample of the same source and options: what every replay must deliver."""
    path = tmp_path_factory.mktemp("sample") / "all.parquet"
    assert main(["sample", str(RULES), *SOURCE, "-o", str(path)]) == 0
    return pl.read_parquet(path).select(EVENT_ID, LABEL)


def kafka_url(broker) -> str:
    return f"kafka://{broker.address}/t-{uuid.uuid4().hex[:10]}"


def topic_events(url: str) -> pl.DataFrame:
    return pl.concat([b.select(EVENT_ID, LABEL, "header_label") for b in read_back(url, timeout=30)])


def options() -> SourceOptions:
    return SourceOptions(source=str(RULES), entities=1000, end="2024-05-02T00:00:00Z")


def wait_for_checkpoint(path: Path, above: int = 0, timeout: float = 120.0) -> dict:
    """The checkpoint once it holds more than ``above`` acknowledged events and the replay is not done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            state = json.loads(path.read_text())  # replaced atomically: always whole
            assert not state["done"], "the worker finished before the test could act mid-replay"
            if state["position"] > above:
                return state
        time.sleep(0.05)
    raise AssertionError(f"{path} never held an acknowledged event")


def wait_for_line(process: subprocess.Popen, text: str) -> str:
    """Read stderr up to the line holding ``text`` (the rest stays for communicate())."""
    while line := process.stderr.readline():
        if text in line:
            return line
    raise AssertionError(f"no line with {text!r}; exit code {process.wait()}")


def wait_for_metric(port: int, name: str, timeout: float = 60.0) -> float:
    """The metric's value once it is above 0 on the driver's endpoint."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            for text in answer.read().decode().splitlines():
                if text.startswith(name + " ") and float(text.split()[1]) > 0:
                    return float(text.split()[1])
        time.sleep(0.1)
    raise AssertionError(f"{name} stayed at 0")


def verify(url: str, manifest: Path, capsys) -> dict:
    capsys.readouterr()
    code = main(["verify", "--from", url, "--manifest", str(manifest), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == (0 if report["ok"] else 1)
    return report


def assert_workers_add_up(record: dict, n: int) -> None:
    """The merged manifest's counts are the sum of its workers' (and of their own manifests)."""
    workers = record["workers"]
    assert [w["shard"] for w in workers] == [f"{k}/{n}" for k in range(n)]
    assert sum(w["counts"]["events"] for w in workers) == record["counts"]["events"] == record["sent"]["to"]
    labels = sum((Counter(w["counts"]["labels"]) for w in workers), Counter())
    assert dict(labels) == record["counts"]["labels"]
    for w in workers:
        own = json.loads(Path(w["manifest"]).read_text())
        assert own["counts"] == w["counts"] and own["source_args"]["shard"] == w["shard"]


def test_two_workers_deliver_the_unsharded_sample_exactly_once(ray_runtime, broker, unsharded, tmp_path, capsys):
    url, manifest = kafka_url(broker), tmp_path / "replay.manifest.json"
    code = main(["replay", str(RULES), *SOURCE, "--to", url, "--ray", "--workers", "2",
                 "--checkpoint-dir", str(tmp_path / "ckpt"), "--manifest", str(manifest)])
    err = capsys.readouterr().err
    assert code == 0, err[-3000:]
    assert f"replayed: {unsharded.height:,} events acknowledged" in err and "from 2 Ray workers" in err
    back = topic_events(url)
    assert back[EVENT_ID].n_unique() == back.height == unsharded.height
    assert (back[LABEL] == back["header_label"]).all()
    joined = back.join(unsharded, on=EVENT_ID, how="full", suffix="_sent")
    assert joined.height == unsharded.height and (joined[LABEL] == joined[f"{LABEL}_sent"]).all()
    record = json.loads(manifest.read_text())
    assert record["ended"] == "complete" and record["counts"]["events"] == unsharded.height
    assert record["counts"]["labels"] == dict(unsharded[LABEL].value_counts().iter_rows())
    assert_workers_add_up(record, 2)
    assert all(json.loads((tmp_path / "ckpt" / f"worker-{k}-of-2.checkpoint").read_text())["done"]
               for k in range(2))
    report = verify(url, manifest, capsys)
    assert report["ok"] and report["missing"] == report["duplicated"] == 0


def test_two_workers_post_every_event_once_to_an_http_endpoint(ray_runtime, receiver, unsharded, tmp_path, capsys):
    code = main(["replay", str(RULES), *SOURCE, "--to", receiver.url(), "--ray", "--workers", "2",
                 "--manifest", str(tmp_path / "replay.manifest.json")])
    assert code == 0, capsys.readouterr().err[-3000:]
    assert sorted(receiver.ids()) == sorted(unsharded[EVENT_ID].to_list())


def test_a_killed_worker_is_restarted_and_resumes_from_its_checkpoint(ray_runtime, broker, unsharded, tmp_path):
    from streamsynth.ray_replay import start_replay

    url, manifest, lines = kafka_url(broker), tmp_path / "replay.manifest.json", []
    rate, flush_every = 1500.0, 0.5  # two workers at 750 events/s each: about 3 s of replay each
    settings = ReplaySettings(to=url, rate=rate, manifest=manifest, flush_every=flush_every)
    job = start_replay(options(), settings, workers=2, checkpoint_dir=tmp_path / "ckpt", say=lines.append)
    try:
        # well into its shard of about 2,200 events (its first checkpoint may come after a few)
        state = wait_for_checkpoint(tmp_path / "ckpt" / "worker-0-of-2.checkpoint", above=300)
        ray_runtime.kill(job.actors[0], no_restart=False)
        result = job.wait()
    finally:
        job.close()
    said = "\n".join(lines)
    assert result.code == 0, said[-3000:]
    assert result.restarts == [1, 0]
    assert "worker 0/2 restarted by Ray" in said
    resumed = int(re.search(r"worker 0/2: resuming after ([\d,]+) acknowledged", said)[1].replace(",", ""))
    assert resumed >= state["position"]  # from its checkpoint, not from the start
    assert result.record["workers"][0]["restarts"] == 1
    assert_workers_add_up(result.record, 2)
    assert result.record["counts"]["events"] == unsharded.height
    report = reconcile(iter([unsharded]), read_back(url, timeout=30))
    assert report.missing == report.mislabelled == report.unexpected == 0
    # What worker 0 handed over after its last checkpoint is sent again: at most what falls due in
    # one flush interval at its rate (doubled: a stalled process catches up on its schedule).
    assert report.duplicated <= 2 * (rate / 2) * flush_every, report


def test_a_stop_flushes_every_worker_and_the_same_command_resumes(ray_runtime, broker, unsharded, tmp_path,
                                                                  capsys):
    """What SIGTERM on the driver does (``RayReplay.stop``): each worker stops after a flush and
    writes its manifest, the merged one adds up; run again, the replay completes from the checkpoints."""
    from streamsynth.ray_replay import start_replay

    url, manifest, ckpt = kafka_url(broker), tmp_path / "replay.manifest.json", tmp_path / "ckpt"
    settings = ReplaySettings(to=url, rate=600.0, manifest=manifest, flush_every=0.25)
    job = start_replay(options(), settings, workers=2, checkpoint_dir=ckpt, say=lambda line: None)
    try:
        for k in range(2):
            wait_for_checkpoint(ckpt / f"worker-{k}-of-2.checkpoint")
        job.stop()
        result = job.wait()
    finally:
        job.close()
    record = result.record
    assert result.code == 0 and record["ended"] == "stopped"
    assert 0 < record["sent"]["to"] < unsharded.height
    assert all(w["ended"] == "stopped" and w["unacknowledged"] == 0 for w in record["workers"])
    assert_workers_add_up(record, 2)
    report = verify(url, manifest, capsys)  # the acknowledged prefix of each shard, all there
    assert report["missing"] == 0 and report["expected"] == record["sent"]["to"]

    # unpaced this time: a checkpoint resumes the same source into the same sink, at any pace
    again = start_replay(options(), replace(settings, rate=None), workers=2, checkpoint_dir=ckpt,
                         say=lambda line: None)
    try:
        result = again.wait()
    finally:
        again.close()
    assert result.record["ended"] == "complete" and result.record["counts"]["events"] == unsharded.height
    report = verify(url, manifest, capsys)
    assert report["ok"] and report["missing"] == 0 and report["expected"] == unsharded.height


def test_sigterm_on_the_driver_stops_the_workers_after_progress_and_metrics(ray_runtime, broker, unsharded,
                                                                           tmp_path, capsys, free_port):
    """The command in a process of its own (joining this module's runtime through RAY_ADDRESS):
    one progress line a second summing the workers, one metrics endpoint, and SIGTERM ends it
    with every worker flushed and a merged manifest whose acknowledged events are all in the topic."""
    url, manifest, port = kafka_url(broker), tmp_path / "replay.manifest.json", free_port()
    env = os.environ | {"RAY_ADDRESS": ray_runtime.get_runtime_context().gcs_address}
    process = subprocess.Popen(
        [sys.executable, "-m", "streamsynth", "replay", str(RULES), *SOURCE, "--to", url, "--ray", "--workers", "2",
         "--rate", "600", "--flush-every", "0.25", "--checkpoint-dir", str(tmp_path / "ckpt"),
         "--manifest", str(manifest), "--metrics-port", str(port)],
        stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = wait_for_line(process, "acknowledged in")  # the driver's progress line
        assert line.startswith("replay on 2 Ray workers (2 running): ")
        position = wait_for_metric(port, "streamsynth_replay_position")
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err[-3000:]
    assert "SIGTERM: stopping 2 Ray workers" in err and "stopped: " in err and "Traceback" not in err
    record = json.loads(manifest.read_text())
    assert record["ended"] == "stopped" and position <= record["sent"]["to"] < unsharded.height
    assert_workers_add_up(record, 2)
    report = verify(url, manifest, capsys)
    assert report["missing"] == 0 and report["expected"] == record["sent"]["to"]


def test_an_unreachable_broker_is_one_clear_error_and_no_manifest(ray_runtime, tmp_path, capsys, free_port):
    url = f"kafka://127.0.0.1:{free_port()}/t?connect_timeout=2s"
    code = main(["replay", str(RULES), *SOURCE, "--to", url, "--ray", "--workers", "2",
                 "--checkpoint-dir", str(tmp_path / "ckpt"), "--manifest", str(tmp_path / "m.json")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err[-3000:]
    assert "worker 0/2, worker 1/2: " in err and "127.0.0.1" in err
    assert not (tmp_path / "m.json").exists()


def test_a_metrics_port_in_use_fails_before_any_worker_starts(ray_runtime, broker, tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code = main(["replay", str(RULES), *SOURCE, "--to", kafka_url(broker), "--ray", "--workers", "2",
                     "--metrics-port", str(taken.getsockname()[1]), "--manifest", str(tmp_path / "m.json")])
    assert code == 2 and "--metrics-port: cannot serve metrics" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--workers", "2"], "--workers only applies with --ray"),
    (["--checkpoint-dir", "ckpt"], "--checkpoint-dir only applies with --ray"),
    (["--ray"], "--ray needs --workers N"),
    (["--ray", "--workers", "0"], "--workers 0 is not a positive whole number"),
    (["--ray", "--workers", "2", "-n", "100"], "-n/--events"),
    (["--ray", "--workers", "2", "--shard", "0/2"], "--shard K/N does not apply"),
    (["--ray", "--workers", "2", "--checkpoint", "c.ckpt"], "use --checkpoint-dir PATH"),
    (["--ray", "--workers", "2", "--rate", "10", "--speed", "2"], "either --speed or --rate"),
    (["--ray", "--workers", "2"], "cannot share the file sink"),
])
def test_what_needs_ray_is_refused_without_it(args, message, tmp_path, capsys):
    code = main(["replay", str(RULES), *SOURCE, "--to", f"file://{tmp_path}/out.jsonl",
                 "--manifest", str(tmp_path / "m.json"), *args])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_without_ray_the_error_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    code = main(["replay", str(RULES), *SOURCE, "--to", "kafka://127.0.0.1:9/t", "--ray", "--workers", "2",
                 "--manifest", str(tmp_path / "m.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert 'pip install -e ".[ray]"' in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []
