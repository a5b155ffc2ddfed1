"""The deployment files checked against the code they deploy, so that neither can drift.

`systemd/` (units), `deploy/Containerfile`, `deploy/kubernetes/` (kustomize base),
`deploy/prometheus/alerts.yml` and `deploy/grafana/jobd.json` are parsed here and compared with
jobd itself: the console script and its argument parser, the probe paths the HTTP handler serves
(asked in-process), the default and configured drain timeouts, the metric registry, the label
values jobd emits. `tests/system/test_deploy_live.py` repeats the metric checks against a running
daemon's `/metrics`. Tools that exist only on some machines (`systemd-analyze`, `kubectl`,
`promql-parser`) are used when present; otherwise their test is skipped and says so.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from jobd.cli.parser import build_parser
from jobd.config import loader as config
from jobd.config.durations import parse_duration
from jobd.config.settings import WorkerSettings
from jobd.daemon import EXIT_CONFIG
from jobd.ops import metrics
from jobd.ops.health import Health
from jobd.ops.probes import HttpServer
from jobd.ops.systemd import Notifier

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "systemd"
DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
CONTAINERFILE = DEPLOY / "Containerfile"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "jobd.json"
UNITS = ("jobd.service", "jobd@.service")
CONFIG_PATH = "/etc/jobd/jobs.toml"
"""Where every deployment puts jobs.toml (unit, image CMD, ConfigMap mount)."""
TEMPLATE_INSTANCE = "example"
TARGET_LABELS = frozenset(
    {"job", "instance", "namespace", "pod", "service", "container", "endpoint"}
)
"""Labels Prometheus adds when it scrapes (static configs, the Prometheus Operator)."""
METRIC_PREFIXES = ("jobd_", "process_", "python_")
"""Metric families of jobd's registry (its own, the process and platform collectors)."""
LABEL_VALUES = {
    "outcome": frozenset(metrics.OUTCOMES),
    "state": frozenset(metrics.QUEUE_STATES),
    "reason": frozenset(metrics.DEAD_REASONS),
}
"""Labels with a fixed set of values, as jobd.ops.metrics declares them."""
FAKE_ENVIRON = {"REDIS_URL": "redis://redis:6379/0"}


# -- parsing helpers (also used by tests/system/test_deploy_live.py) -------------------------


def console_script() -> str:
    """The name `pip install` gives the command running `jobd.cli:main`."""
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    (name,) = [name for name, target in scripts.items() if target == "jobd.cli:main"]
    return str(name)


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file as {section: {key: [values in order]}} (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        key, separator, value = line.partition("=")
        assert separator, f"{path.name}: not a key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(unit: dict[str, dict[str, list[str]]], key: str, section: str = "Service") -> str:
    """The last value of `key` (the one systemd uses for single-valued settings)."""
    values = unit[section].get(key)
    assert values, f"[{section}] {key}= is missing"
    return values[-1]


def exec_argv(
    unit: dict[str, dict[str, list[str]]], instance: str = TEMPLATE_INSTANCE
) -> list[str]:
    """ExecStart= as argv, %i replaced by `instance`, without systemd's -@:+! prefixes."""
    argv = shlex.split(one(unit, "ExecStart").replace("%i", instance))
    argv[0] = argv[0].lstrip("-@:+!")
    return argv


@dataclass
class Instruction:
    keyword: str
    value: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_containerfile(path: Path = CONTAINERFILE) -> list[Stage]:
    """The stages of a Containerfile, each with its instructions (continuations joined)."""
    stages: list[Stage] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not buffer:
            start = number
        buffer.append(stripped.removesuffix("\\").strip())
        if stripped.endswith("\\"):
            continue
        keyword, _, value = " ".join(buffer).partition(" ")
        buffer = []
        instruction = Instruction(keyword.upper(), value.strip(), start)
        if instruction.keyword == "FROM":
            words = instruction.value.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append(instruction)
    assert not buffer, f"{path.name}: the last instruction ends with a backslash"
    return stages


def exec_form(instruction: Instruction) -> list[str]:
    """The JSON array of an exec-form instruction; fails on the shell form."""
    try:
        value = json.loads(instruction.value)
    except json.JSONDecodeError:
        value = None
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), (
        f"line {instruction.line}: {instruction.keyword} must be exec form (a JSON array of "
        f"strings) so that the process gets signals itself, not {instruction.value!r}"
    )
    return value


def healthcheck_argv(stage: Stage) -> list[str]:
    (healthcheck,) = stage.all("HEALTHCHECK")
    _, marker, command = healthcheck.value.partition("CMD ")
    assert marker, f"HEALTHCHECK without CMD: {healthcheck.value!r}"
    return exec_form(Instruction("CMD", command.strip(), healthcheck.line))


def manifests() -> dict[str, dict[str, Any]]:
    """Every resource of the kustomization, by kind."""
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    found: dict[str, dict[str, Any]] = {}
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((KUBERNETES / name).read_text()):
            assert document["kind"] not in found, f"two {document['kind']} resources"
            found[document["kind"]] = document
    return found


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (jobd,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(jobd)


def configmap_toml() -> str:
    (text,) = yaml.safe_load((KUBERNETES / "configmap.yaml").read_text())["data"].values()
    return str(text)


def configmap_settings() -> Any:
    return config.loads(configmap_toml(), source="configmap.yaml", environ=FAKE_ENVIRON)


def stop_margin() -> float:
    """The seconds beyond drain_timeout that jobd asks systemd for when it starts draining
    (Notifier.stopping's EXTEND_TIMEOUT_USEC): the time to cancel, requeue and exit."""
    sent: list[str] = []
    notifier = Notifier({"NOTIFY_SOCKET": "/nonexistent"})
    notifier.send = lambda *lines: sent.extend(lines)
    notifier.stopping(0.0)
    (extend,) = [line for line in sent if line.startswith("EXTEND_TIMEOUT_USEC=")]
    return int(extend.partition("=")[2]) / 1_000_000


# PromQL: the expressions of the alerts, the dashboard and the autoscalers.

_METRIC = re.compile(r"(?<![\w:$\"])((?:" + "|".join(METRIC_PREFIXES) + r")[A-Za-z0-9_:]*)")
_SELECTOR = re.compile(r"(?<![\w:])([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*\"([^\"]*)\"")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool"})


@dataclass(frozen=True)
class Expression:
    where: str
    text: str

    def metric_names(self) -> set[str]:
        return set(_METRIC.findall(self.text))

    def matchers(self) -> Iterator[tuple[str, str, str, str]]:
        """(metric, label, operator, value) of every label matcher."""
        for selector in _SELECTOR.finditer(self.text):
            metric = selector.group(1)
            for label, operator, value in _MATCHER.findall(selector.group(2)):
                yield metric, label, operator, value

    def label_names(self) -> set[str]:
        names = {label for _, label, _, _ in self.matchers()}
        for grouping in _GROUPING.findall(self.text):
            names.update(part.strip() for part in grouping.split(",") if part.strip())
        return names - _KEYWORDS

    def for_parser(self) -> str:
        """The text with Grafana's variables given values, as Prometheus would receive it."""
        return self.text.replace("$__rate_interval", "5m")


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def expressions() -> list[Expression]:
    """Every PromQL expression jobd's deployment files hold."""
    found = [Expression(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]
    for panel in panels():
        for target in panel["targets"]:
            found.append(Expression(f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
            assert inner, f"variable {variable['name']}: {query!r}"
            found.append(Expression(f"variable {variable['name']}", inner.group(1)))
    for trigger in manifests()["ScaledObject"]["spec"]["triggers"]:
        found.append(Expression("keda-scaledobject.yaml", trigger["metadata"]["query"]))
    return found


def sample_names(family: str, kind: str) -> set[str]:
    """The sample names a metric family of type `kind` exposes (what PromQL can select)."""
    if kind == "counter":
        base = family.removesuffix("_total")
        return {f"{base}_total", f"{base}_created"}
    if kind == "histogram":
        return {family + suffix for suffix in ("_bucket", "_sum", "_count", "_created")}
    if kind == "summary":
        return {family + suffix for suffix in ("", "_sum", "_count", "_created")}
    return {family}


def registry_samples() -> dict[str, str]:
    """Sample name -> family name, for every family of jobd's registry."""
    return {
        sample: family.name
        for family in metrics.Metrics().registry.collect()
        for sample in sample_names(family.name, family.type)
    }


def declared_labels() -> dict[str, set[str]]:
    """Family name -> the label names jobd.ops.metrics declares for it."""
    declared = metrics.Metrics()
    return {
        item._name: set(item._labelnames)
        for item in vars(declared).values()
        if isinstance(item, MetricWrapperBase)
    }


def balanced(text: str) -> bool:
    """Brackets and quotes of a PromQL expression balance (a cheap syntax check)."""
    closing = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif char in "([{":
            stack.append(char)
        elif char in closing and (not stack or stack.pop() != closing[char]):
            return False
    return not stack and not quoted


# -- systemd ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", UNITS)
def test_unit_is_a_notify_service_that_drains_on_sigterm(name: str) -> None:
    unit = parse_unit(SYSTEMD / name)
    assert one(unit, "Type") == "notify"
    assert one(unit, "NotifyAccess") == "main"  # EXTEND_TIMEOUT_USEC comes from the main process
    assert one(unit, "KillSignal") == "SIGTERM"
    assert one(unit, "KillMode") == "mixed"  # SIGTERM to jobd only; SIGKILL to all at the end
    assert one(unit, "Restart") == "on-failure"
    assert str(EXIT_CONFIG) in one(unit, "RestartPreventExitStatus").split()
    watchdog = parse_duration(one(unit, "WatchdogSec"))
    # jobd pings at half of WatchdogSec; longer than the loop lag at which /healthz fails.
    assert watchdog > 2 * 5.0
    assert any(
        path.lstrip("-").startswith("/etc/jobd/") for path in unit["Service"]["EnvironmentFile"]
    )
    assert one(unit, "WantedBy", "Install") == "multi-user.target"


@pytest.mark.parametrize("name", UNITS)
def test_unit_is_hardened(name: str) -> None:
    unit = parse_unit(SYSTEMD / name)
    service = unit["Service"]
    assert service.get("DynamicUser") == ["yes"] or service.get("User", ["root"])[-1] != "root"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert one(unit, key) == value, key
    # AF_UNIX for sd_notify (and unix:// Redis URLs), AF_INET(6) for Redis and /metrics.
    assert set(one(unit, "RestrictAddressFamilies").split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    # Would hide /proc/stat, and with it every process_* metric (see ProcessCollector).
    assert "ProcSubset" not in unit["Service"]


@pytest.mark.parametrize("name", UNITS)
def test_stop_timeout_covers_the_drain(name: str) -> None:
    unit = parse_unit(SYSTEMD / name)
    stop_timeout = parse_duration(one(unit, "TimeoutStopSec"))
    example = config.load(REPO / "config" / "jobs.toml", environ=FAKE_ENVIRON)
    drain = max(WorkerSettings().drain_timeout, example.worker.drain_timeout)
    assert stop_timeout >= drain + stop_margin(), (stop_timeout, drain, stop_margin())


@pytest.mark.parametrize("name", UNITS)
def test_exec_start_runs_the_console_script_with_flags_that_exist(name: str) -> None:
    argv = exec_argv(parse_unit(SYSTEMD / name))
    assert argv[0].startswith("/") and Path(argv[0]).name == console_script()
    arguments = build_parser().parse_args(argv[1:])  # exits 2 (fails the test) on unknown flags
    assert arguments.command == "run"
    expected = CONFIG_PATH if "@" not in name else f"/etc/jobd/{TEMPLATE_INSTANCE}.toml"
    assert arguments.config == expected


def test_template_unit_differs_from_the_plain_unit_only_where_it_must() -> None:
    plain = parse_unit(SYSTEMD / "jobd.service")
    template = parse_unit(SYSTEMD / "jobd@.service")
    per_instance = {"Description", "ExecStart", "EnvironmentFile"}
    for section in plain.keys() | template.keys():
        for key in plain.get(section, {}).keys() | template.get(section, {}).keys():
            if key not in per_instance:
                assert plain[section].get(key) == template[section].get(key), f"[{section}] {key}"
    assert "%i" in one(template, "ExecStart") and "%i" in one(template, "Description", "Unit")
    # The shared secrets file, then an optional per-instance one.
    assert template["Service"]["EnvironmentFile"][0] == plain["Service"]["EnvironmentFile"][0]
    assert template["Service"]["EnvironmentFile"][1] == "-/etc/jobd/%i.env"


def _units_for_systemd(tmp_path: Path) -> list[Path]:
    """Copies of the units whose ExecStart names a jobd that exists on this machine (systemd
    checks that the command is executable); everything else is unchanged."""
    installed = shutil.which(console_script()) or str(Path(sys.executable).parent / "jobd")
    if not Path(installed).exists():
        installed = str(tmp_path / "jobd")
        Path(installed).write_text("#!/bin/sh\n")
        Path(installed).chmod(0o755)
    copies = []
    for name in UNITS:
        text = (SYSTEMD / name).read_text()
        argv0 = exec_argv(parse_unit(SYSTEMD / name))[0]
        (tmp_path / name).write_text(text.replace(f"ExecStart={argv0} ", f"ExecStart={installed} "))
        copies.append(tmp_path / name.replace("@.", f"@{TEMPLATE_INSTANCE}."))
    return copies


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed here: the units were not verified by systemd")
    return found


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    for unit in _units_for_systemd(tmp_path):
        done = subprocess.run(
            [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=30
        )
        output = done.stdout + done.stderr
        # Unknown keys and bad values are only warnings (exit 0): any line naming the unit counts.
        problems = [line for line in output.splitlines() if str(tmp_path) in line or "jobd" in line]
        assert done.returncode == 0 and not problems, output


def test_systemd_analyze_security_rates_the_units_ok(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    for unit in _units_for_systemd(tmp_path):
        done = subprocess.run(
            [analyze, "security", "--offline=yes", "--threshold=30", "--no-pager", str(unit)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if "--offline" in done.stderr and "unrecognized" in done.stderr:
            pytest.skip("this systemd-analyze has no --offline (systemd < 250): exposure not rated")
        # --threshold=30: "Overall exposure level" 3.0 or better, else exit 1.
        assert done.returncode == 0, done.stdout[-600:] + done.stderr


# -- Containerfile ----------------------------------------------------------------------------


def test_containerfile_is_multi_stage_and_the_runtime_has_no_build_tools() -> None:
    *builders, runtime = parse_containerfile()
    assert builders, "a build stage makes the wheels"
    assert runtime.base.split(":")[-1].endswith("-slim") or "slim" in runtime.base
    runtime_text = "\n".join(f"{i.keyword} {i.value}" for i in runtime.instructions)
    for tool in ("gcc", "build-essential", "g++", "make ", "python3-dev", "-dev "):
        assert tool not in runtime_text, f"{tool!r} in the runtime stage"
    # Only wheels come from the build stage: no COPY of the sources into the runtime image.
    for copy in runtime.all("COPY") + runtime.all("ADD"):
        assert "--from=" in copy.value, f"line {copy.line}: {copy.value}"
    assert any(f"from={builders[-1].name}" in run.value for run in runtime.all("RUN"))


def test_containerfile_build_stage_copies_what_the_wheel_needs() -> None:
    build = parse_containerfile()[0]
    copied = {
        source
        for copy in build.all("COPY")
        for source in copy.value.split()[:-1]
        if not source.startswith("--")
    }
    readme = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["readme"]
    assert {"pyproject.toml", readme, "jobd"} <= copied
    assert all((REPO / source).exists() for source in copied)


def test_containerfile_python_satisfies_requires_python() -> None:
    text = CONTAINERFILE.read_text()
    version = re.search(r"^ARG PYTHON_VERSION=(\d+)\.(\d+)$", text, re.MULTILINE)
    assert version, "ARG PYTHON_VERSION=X.Y"
    required = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = re.fullmatch(r">=(\d+)\.(\d+)", required)
    assert minimum
    assert tuple(map(int, version.groups())) >= tuple(map(int, minimum.groups()))


def test_containerfile_entrypoint_is_the_console_script_in_exec_form() -> None:
    runtime = parse_containerfile()[-1]
    (entrypoint,) = runtime.all("ENTRYPOINT")
    (cmd,) = runtime.all("CMD")
    assert exec_form(entrypoint) == [console_script()]
    arguments = build_parser().parse_args(exec_form(cmd))
    assert (arguments.command, arguments.config) == ("run", CONFIG_PATH)
    assert all(stop.value == "SIGTERM" for stop in runtime.all("STOPSIGNAL"))


def test_containerfile_runs_as_a_numeric_non_root_user() -> None:
    runtime = parse_containerfile()[-1]
    users = runtime.all("USER")
    (entrypoint,) = runtime.all("ENTRYPOINT")
    assert users and users[-1].line < entrypoint.line, "USER before ENTRYPOINT"
    user, _, group = users[-1].value.partition(":")
    # Numeric, or Kubernetes' runAsNonRoot cannot check it; and the same as the Deployment's.
    assert user.isdigit() and int(user) != 0, user
    pod = manifests()["Deployment"]["spec"]["template"]["spec"]["securityContext"]
    assert int(user) == pod["runAsUser"]
    assert not group or int(group) == pod["runAsGroup"]


def test_containerfile_healthcheck_asks_healthz_on_the_exposed_port() -> None:
    runtime = parse_containerfile()[-1]
    argv = healthcheck_argv(runtime)
    assert argv[:2] == ["python", "-c"]
    ast.parse(argv[2])  # the one-liner is valid Python
    url = re.search(r"http://[^'\"]+", argv[2])
    assert url
    port = int(url.group(0).split(":")[2].split("/")[0])
    assert url.group(0).endswith(liveness_path())
    (expose,) = runtime.all("EXPOSE")
    assert int(expose.value.split("/")[0]) == port == configmap_settings().http.port


# -- Kubernetes -------------------------------------------------------------------------------


def liveness_path() -> str:
    return str(container(manifests()["Deployment"])["livenessProbe"]["httpGet"]["path"])


def test_kustomization_lists_every_manifest_but_the_hpa_alternative() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    on_disk = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk - {"hpa.yaml"}
    # KEDA creates an HPA of its own: the two must never be applied together.
    assert "keda-scaledobject.yaml" in kustomization["resources"]
    assert "# - hpa.yaml" in (KUBERNETES / "kustomization.yaml").read_text()
    (image,) = kustomization["images"]
    assert image["name"] == container(manifests()["Deployment"])["image"]


def test_kustomize_builds_the_base() -> None:
    if shutil.which("kubectl"):
        command = ["kubectl", "kustomize", str(KUBERNETES)]
    elif shutil.which("kustomize"):
        command = ["kustomize", "build", str(KUBERNETES)]
    else:
        pytest.skip("neither kubectl nor kustomize is installed here: the base was not built")
    built = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    kinds = sorted(document["kind"] for document in yaml.safe_load_all(built.stdout))
    assert kinds == sorted(manifests())


def test_probes_match_the_endpoints_the_daemon_serves() -> None:
    deployment = manifests()["Deployment"]
    jobd = container(deployment)
    startup, liveness, readiness = (
        jobd[probe]["httpGet"] for probe in ("startupProbe", "livenessProbe", "readinessProbe")
    )
    # Starting and liveness ask /healthz: a worker waiting for Redis is alive, not to be restarted.
    assert startup["path"] == liveness["path"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    (endpoint,) = manifests()["ServiceMonitor"]["spec"]["endpoints"]
    assert endpoint["path"] == annotations["prometheus.io/path"]

    health = Health(max_loop_lag=60.0)
    server = HttpServer("127.0.0.1", 0, "127.0.0.1:0", health, metrics.Metrics())
    server.start()
    try:

        def status(path: str) -> int:
            url = f"http://127.0.0.1:{server.port}{path}"
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    return int(response.status)
            except urllib.error.HTTPError as error:
                error.close()
                return error.code

        health.set_ready(False, "redis unavailable")
        assert status(liveness["path"]) == 200  # alive while Redis is away
        assert status(readiness["path"]) == 503  # but not ready
        health.set_ready(True)
        assert status(readiness["path"]) == 200
        assert status(endpoint["path"]) == 200
        assert status("/no-such-path") == 404  # so the 200s above are the real endpoints
    finally:
        server.close()


def test_ports_agree_with_the_configured_listen_address() -> None:
    settings = configmap_settings()
    # Reachable from the kubelet and Prometheus: not the default loopback address.
    assert settings.http.host in ("0.0.0.0", "::")
    kinds = manifests()
    deployment = kinds["Deployment"]
    (port,) = container(deployment)["ports"]
    assert port["containerPort"] == settings.http.port
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container(deployment)[probe]["httpGet"]["port"] in (
            port["name"],
            port["containerPort"],
        )
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == settings.http.port
    (service_port,) = kinds["Service"]["spec"]["ports"]
    assert service_port["targetPort"] in (port["name"], port["containerPort"])
    (endpoint,) = kinds["ServiceMonitor"]["spec"]["endpoints"]
    assert endpoint["port"] == service_port["name"]


def test_grace_period_exceeds_the_configured_drain_timeout() -> None:
    deployment = manifests()["Deployment"]
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    drain = configmap_settings().worker.drain_timeout
    assert grace >= drain + stop_margin(), (grace, drain)


def test_deployment_is_locked_down_and_reads_config_and_secret() -> None:
    kinds = manifests()
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    jobd = container(kinds["Deployment"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    security = jobd["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= jobd["resources"][kind].keys(), kind
    # The image's CMD, spelled out: jobs.toml where the ConfigMap is mounted.
    arguments = build_parser().parse_args(jobd["args"])
    assert (arguments.command, arguments.config) == ("run", CONFIG_PATH)
    mounts = {mount["name"]: mount for mount in jobd["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    (config_volume,) = [name for name, volume in volumes.items() if "configMap" in volume]
    assert volumes[config_volume]["configMap"]["name"] == kinds["ConfigMap"]["metadata"]["name"]
    assert mounts[config_volume]["mountPath"] == str(Path(CONFIG_PATH).parent)
    assert Path(CONFIG_PATH).name in kinds["ConfigMap"]["data"]
    # REDIS_URL from a Secret, and jobs.toml reads it from the environment.
    env = {item["name"]: item for item in jobd["env"]}
    assert "secretKeyRef" in env["REDIS_URL"]["valueFrom"]
    assert "${REDIS_URL}" in configmap_toml()
    assert configmap_settings().redis.url == FAKE_ENVIRON["REDIS_URL"]


def test_service_pdb_and_autoscalers_select_the_deployment() -> None:
    kinds = manifests()
    deployment = kinds["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert kinds["Service"]["spec"]["selector"].items() <= pod_labels.items()
    assert (
        kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items()
        <= pod_labels.items()
    )
    service_labels = kinds["Service"]["metadata"].get("labels", {}) | pod_labels  # kustomize labels
    assert (
        kinds["ServiceMonitor"]["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    )
    name = deployment["metadata"]["name"]
    assert kinds["ScaledObject"]["spec"]["scaleTargetRef"]["name"] == name
    hpa = yaml.safe_load((KUBERNETES / "hpa.yaml").read_text())
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": name,
    }
    # Without replicas in the Deployment the autoscaler's count is not reset by every apply.
    assert "replicas" not in deployment["spec"]


def test_keda_scales_on_queued_jobs_counted_once_per_queue() -> None:
    (trigger,) = manifests()["ScaledObject"]["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    query = Expression("keda", trigger["metadata"]["query"])
    assert ("jobd_queue_jobs", "state", "=", "queued") in set(query.matchers())
    # Every worker reports the same figures from Redis: summing over workers would overcount.
    assert "max by (queue) (jobd_queue_jobs" in query.text
    assert float(trigger["metadata"]["threshold"]) > 0


# -- Prometheus rules and the Grafana dashboard -----------------------------------------------


def test_alert_rules_are_well_formed() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert {"summary", "description"} <= rule["annotations"].keys(), rule["alert"]
        if "for" in rule:
            parse_duration(rule["for"])


ALERT_TOPICS = {
    "no live workers": {"jobd_worker_ready"},
    "growing dead letters": {"jobd_jobs_dead_lettered_total"},
    "queue wait": {"jobd_job_queue_wait_seconds_bucket"},
    "oldest job": {"jobd_queue_oldest_job_age_seconds"},
    "failure ratio": {"jobd_jobs_finished_total"},
    "redis errors": {"jobd_redis_errors_total"},
    "redis down": {"jobd_redis_up"},
}


def test_alerts_cover_every_failure_the_issue_names() -> None:
    by_metric = {
        name: rule for rule in alert_rules() for name in Expression("", rule["expr"]).metric_names()
    }
    for topic, needed in ALERT_TOPICS.items():
        assert needed <= by_metric.keys(), topic
    ratio = Expression("", by_metric["jobd_jobs_finished_total"]["expr"])
    assert ("jobd_jobs_finished_total", "outcome", "=", "failed") in set(ratio.matchers())
    assert "absent(jobd_worker_ready)" in by_metric["jobd_worker_ready"]["expr"]
    assert "histogram_quantile(" in by_metric["jobd_job_queue_wait_seconds_bucket"]["expr"]


DASHBOARD_PANELS = {
    "Throughput by outcome": {"jobd_jobs_finished_total"},
    "Queue depth": {"jobd_queue_jobs"},
    "Queue wait": {"jobd_job_queue_wait_seconds_bucket"},
    "Duration percentiles by function": {"jobd_job_duration_seconds_bucket"},
    "Running vs slots": {"jobd_jobs_running", "jobd_worker_slots"},
    "Dead letters": {"jobd_jobs_dead_lettered_total"},
    "Event loop lag": {"jobd_event_loop_lag_seconds"},
}


def test_dashboard_has_the_panels_the_issue_names() -> None:
    by_title = {panel["title"]: panel for panel in panels()}
    for title, needed in DASHBOARD_PANELS.items():
        assert title in by_title, title
        used = set().union(
            *(Expression("", t["expr"]).metric_names() for t in by_title[title]["targets"])
        )
        assert needed <= used, title
    for title in ("Throughput by outcome", "Duration percentiles by function"):
        grouped = " ".join(target["expr"] for target in by_title[title]["targets"])
        assert f"by ({title.split()[-1]}" in grouped, title


def test_dashboard_layout_ids_and_variables() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {variable["name"] for variable in board["templating"]["list"]}
    occupied: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"{panel['title']!r} overlaps another panel"
        occupied |= cells
    for panel in panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"}
            assert used <= variables, (panel["title"], used - variables)


def test_every_metric_named_exists_in_jobds_registry() -> None:
    known = registry_samples()
    for expression in expressions():
        named = expression.metric_names()
        assert named, f"{expression.where}: names no jobd metric"
        assert named <= known.keys(), f"{expression.where}: unknown {sorted(named - known.keys())}"


def test_every_label_named_is_declared_with_values_jobd_emits() -> None:
    families = registry_samples()
    labels = declared_labels()
    for expression in expressions():
        allowed = set(TARGET_LABELS)
        for name in expression.metric_names():
            allowed |= labels.get(families[name], set())
            if name.endswith("_bucket"):
                allowed.add("le")
        unknown = expression.label_names() - allowed
        assert not unknown, f"{expression.where}: labels {sorted(unknown)} are not jobd's"
        for _, label, operator, value in expression.matchers():
            if label in LABEL_VALUES and "$" not in value and operator in ("=", "=~"):
                values = set(value.split("|")) if operator == "=~" else {value}
                assert values <= LABEL_VALUES[label], f"{expression.where}: {label}={value!r}"


def test_promql_expressions_parse() -> None:
    for expression in expressions():
        assert balanced(expression.text), expression.where
    try:
        import promql_parser  # type: ignore[import-not-found]
    except ImportError:
        pytest.skip(
            "promql-parser is not installed: only brackets were checked, not PromQL syntax "
            "(pip install promql-parser)"
        )
    for expression in expressions():
        promql_parser.parse(expression.for_parser())


# -- documentation ----------------------------------------------------------------------------


def test_the_deployment_guides_show_every_deployment_file() -> None:
    """docs/guides/deploy-*.md include each file as it is (MkDocs snippets), so the guides
    cannot show a stale copy."""
    guides = "".join(path.read_text() for path in (REPO / "docs" / "guides").glob("deploy-*.md"))
    included = set(re.findall(r'--8<-- "([^":]+)', guides))
    assert all((REPO / path).exists() for path in included), included
    files = [*SYSTEMD.iterdir(), CONTAINERFILE, ALERTS, DASHBOARD, *KUBERNETES.iterdir()]
    missing = {path.relative_to(REPO).as_posix() for path in files} - included
    assert not missing, f"not shown in docs/guides/deploy-*.md: {sorted(missing)}"
