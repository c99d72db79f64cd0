"""The deployment files people start from: compose, Dockerfile, systemd, Kubernetes.

No Docker engine or cluster runs here, so each file is checked with the real tool that
can read it offline (docker-compose config, promtool, systemd-analyze, the exporter's own
CLI parser and server) and against the repository (every mounted path exists).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.bundle.profile import load_profiles
from exporter.cli import build_parser
from exporter.config import _SECRET_VAR as SECRET_VAR
from tests.e2e.stack import PROMETHEUS_YML, REPO, ManagedProcess, sd_files
from tests.support import free_port, require_binary, wait_until

COMPOSE = REPO / "compose"
K8S = REPO / "deploy" / "kubernetes"
UNIT = REPO / "deploy" / "systemd" / "runbook-exporter.service"
PROFILES = sorted(p.stem for p in (REPO / "profiles").glob("*.yml"))
# Host paths outside the repository a service may mount, and why.
HOST_MOUNTS = {"/": "node_exporter reads the host's filesystems through --path.rootfs"}
VAR = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(:?-[^}]*)?\}")


# --- compose ---------------------------------------------------------------------------


def compose_config(profile: str | None = None) -> dict[str, Any]:
    binary = require_binary("docker-compose", "docker-compose")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(REPO)}
    if profile:
        env["PROFILE"] = profile
    result = subprocess.run(
        [binary, "--env-file", ".env.example", "config"],
        cwd=COMPOSE,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # Compose warns about unset variables instead of failing: every one must be set.
    assert "WARNING" not in result.stderr, result.stderr
    config = yaml.safe_load(result.stdout)
    assert isinstance(config, dict)
    return config


def bind_sources(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(service, host path) of every bind mount, env_file and build file."""
    named = set(config.get("volumes") or {})
    found: list[tuple[str, str]] = []
    for name, service in config["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if source not in named:
                found.append((name, source))
        for env_file in service.get("env_file", []):
            found.append((name, env_file))
        if "build" in service:
            context = Path(service["build"]["context"])
            found.append((name, str(context)))
            found.append((name, str(context / service["build"].get("dockerfile", "Dockerfile"))))
    return found


def test_compose_is_valid_and_mounts_only_repository_paths() -> None:
    config = compose_config()
    assert set(config["services"]) == {
        "exporter",
        "prometheus",
        "alertmanager",
        "grafana",
        "node-exporter",
        "redis",
        "postgres",
    }
    sources = bind_sources(config)
    assert len(sources) >= 10
    for service, source in sources:
        if source in HOST_MOUNTS:
            continue
        path = Path(source)
        assert path.is_relative_to(REPO), f"{service} mounts {source} outside the repository"
        assert path.exists(), f"{service} mounts {source}, which is not in the repository"


@pytest.mark.parametrize("profile", PROFILES)
def test_compose_selects_each_profile(profile: str) -> None:
    """PROFILE picks the exporter's config and the one rules file Prometheus loads."""
    config = compose_config(profile)
    command = config["services"]["exporter"]["command"]
    assert f"--config.file=/etc/runbook-exporter/profiles/{profile}.yml" in command
    rules = [s for svc, s in bind_sources(config) if svc == "prometheus" and "/rules/" in s]
    assert rules == [str(REPO / "rules" / f"{profile}.rules.yml")]
    assert Path(rules[0]).exists()


def test_env_example_sets_every_variable_compose_and_secret_profile_keys_use() -> None:
    example = dict(
        line.split("=", 1)
        for line in (COMPOSE / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    compose_text = (COMPOSE / "docker-compose.yml").read_text()
    without_default = {m[1] for m in VAR.finditer(compose_text) if not m[2]}
    assert without_default <= set(example), without_default - set(example)
    # Variables the profiles read whose names the exporter treats as secret (it redacts
    # their values) come from .env only and reach the exporter container.
    profile_secrets = {
        m[1]
        for p in PROFILES
        for m in VAR.finditer((REPO / "profiles" / f"{p}.yml").read_text())
        if SECRET_VAR.search(m[1])
    }
    assert profile_secrets <= set(example), profile_secrets - set(example)
    passed = yaml.safe_load(compose_text)["services"]["exporter"]["environment"]
    assert profile_secrets <= set(passed), profile_secrets - set(passed)
    exporter_env = (COMPOSE / "exporter.env").read_text()
    for name in profile_secrets:
        assert not re.search(rf"^{name}=", exporter_env, re.M), f"{name} in exporter.env"


def test_every_alertmanager_secret_file_is_documented() -> None:
    config = (REPO / "alertmanager" / "alertmanager.yml").read_text()
    files = set(re.findall(r"_file: /etc/alertmanager/secrets/([\w.-]+)", config))
    assert files
    readme = (COMPOSE / "secrets" / "README.md").read_text()
    assert {f for f in files if f"`{f}`" not in readme} == set()


def test_prometheus_yml_loads_every_profile_rules_file(tmp_path: Path) -> None:
    """promtool reads the shared prometheus.yml laid out as compose mounts it."""
    promtool = require_binary("promtool", "prometheus")
    shutil.copy(PROMETHEUS_YML, tmp_path / "prometheus.yml")
    shutil.copytree(COMPOSE / "targets", tmp_path / "targets")
    (tmp_path / "rules").mkdir()
    for profile in PROFILES:
        shutil.copy(REPO / "rules" / f"{profile}.rules.yml", tmp_path / "rules")
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS: ") >= 1 + len(PROFILES), result.stdout


def test_compose_targets_name_compose_services() -> None:
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    services = set(yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())["services"])
    listed = [path for name in sd_files(config) for path in sorted(COMPOSE.glob(name))]
    assert COMPOSE / "targets" / "runbook-exporter" / "smart-city.yml" in listed
    for path in listed:
        groups = yaml.safe_load(path.read_text())
        hosts = {t.rsplit(":", 1)[0] for g in groups for t in g["targets"]}
        assert hosts <= services | {"localhost"}, (path, hosts)


# --- Dockerfile ------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_dockerfile_runs_as_non_root_and_copies_only_allowed_files() -> None:
    steps = dockerfile()
    users = [args for op, args in steps if op == "USER"]
    assert users
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert uid != "0"
    allowed = [
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    copied = [
        source
        for op, args in steps
        if op == "COPY" and "--from=" not in args
        for source in args.split()[:-1]
    ]
    assert copied
    for source in copied:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert source.rstrip("/") in allowed, f"COPY {source}: excluded by .dockerignore"
    readme = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["readme"]
    assert readme in copied  # setuptools needs it to build the wheel
    entrypoint = next(args for op, args in steps if op == "ENTRYPOINT")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert yaml.safe_load(entrypoint) == list(scripts)
    assert ("EXPOSE", "9711") in steps


def test_dockerfile_healthcheck_tells_a_serving_exporter_from_a_dead_one(
    tmp_path: Path,
) -> None:
    healthcheck = next(args for op, args in dockerfile() if op == "HEALTHCHECK")
    command = yaml.safe_load(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert command[0] == "python"
    port = free_port()
    probe = [sys.executable, *command[1:-1], command[-1].replace(":9711/", f":{port}/")]
    assert probe[-1] != command[-1]

    def healthy() -> bool:
        return subprocess.run(probe, capture_output=True, timeout=30, check=False).returncode == 0

    assert not healthy()
    exporter = ManagedProcess(
        "exporter",
        [sys.executable, "-m", "exporter", f"--web.listen-address=127.0.0.1:{port}"],
        tmp_path,
    )
    exporter.start()
    try:
        wait_until(healthy, 60, "the HEALTHCHECK command to succeed")
    finally:
        exporter.stop()
    assert not healthy()


# --- systemd ---------------------------------------------------------------------------


def unit_exec_start() -> list[str]:
    text = re.sub(r"\\\n\s*", " ", UNIT.read_text())
    line = next(x for x in text.splitlines() if x.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


def parse_unit(text: str) -> dict[str, dict[str, str]]:
    """Sections of a unit file, continuation lines joined; duplicate keys keep the last."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in re.sub(r"\\\n\s*", " ", text).splitlines():
        if not line.strip() or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[] "), {})
            continue
        assert current is not None, f"key before any [Section]: {line!r}"
        assert "=" in line, f"not a unit file line: {line!r}"
        key, _, value = line.partition("=")
        current[key.strip()] = value.strip()
    return sections


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """systemd-analyze verify, with ExecStart pointed at this checkout's console script
    (the unit's /opt path exists only where it is installed)."""
    analyze = shutil.which("systemd-analyze")
    binary = unit_exec_start()[0]
    installed = Path(sys.executable).with_name("runbook-exporter")
    assert installed.exists(), installed
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(binary, str(installed)))
    if analyze is None:  # no systemd on this machine: at least parse it as systemd would
        sections = parse_unit(unit.read_text())
        assert set(sections) == {"Unit", "Service", "Install"}
        assert sections["Service"]["ExecStart"]
        assert sections["Install"]["WantedBy"]
        return
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=120, check=False
    )
    # Unknown keys and bad values are warnings on stderr with exit code 0: none allowed.
    assert result.returncode == 0, result.stderr
    assert UNIT.name not in result.stderr, result.stderr


def test_systemd_unit_flags_are_the_exporters() -> None:
    args = build_parser().parse_args(unit_exec_start()[1:])
    assert args.config_file == "/etc/runbook-exporter/config.yml"
    assert args.listen == ":9711"
    service = parse_unit(UNIT.read_text())["Service"]
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"  # the exporter reloads on HUP
    assert service["DynamicUser"] == "yes"


# --- Kubernetes ------------------------------------------------------------------------


def manifest(name: str) -> dict[str, Any]:
    data = yaml.safe_load((K8S / name).read_text())
    assert isinstance(data, dict)
    return data


def test_prometheus_rules_hold_the_committed_rule_groups() -> None:
    """Each PrometheusRule wraps exactly the groups of rules/<profile>.rules.yml (that both
    equal a fresh generation is `bundle check`'s test in tests/bundle)."""
    profiles = load_profiles(REPO / "profiles")
    for profile in profiles:
        rule = yaml.safe_load((K8S / "rules" / f"{profile.slug}.yaml").read_text())
        assert rule["kind"] == "PrometheusRule"
        assert rule["apiVersion"] == "monitoring.coreos.com/v1"
        plain = yaml.safe_load((REPO / "rules" / f"{profile.slug}.rules.yml").read_text())
        assert rule["spec"]["groups"] == plain["groups"]


def test_kubernetes_manifests_fit_together() -> None:
    deployment = manifest("deployment.yaml")
    service = manifest("service.yaml")
    monitor = manifest("servicemonitor.yaml")
    pod = deployment["spec"]["template"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] in ports
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {
        p["name"] for p in service["spec"]["ports"]
    }
    args = build_parser().parse_args(container["args"])
    profile = Path(args.config_file)
    assert profile.parent == Path("/etc/runbook-exporter/profiles")  # shipped in the image
    assert (REPO / "profiles" / profile.name).exists()
    assert args.listen.rpartition(":")[2] == str(ports["http-metrics"])
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    security = pod["spec"]["securityContext"]
    uid = next(a for op, a in dockerfile() if op == "USER").split(":")[0]
    assert security["runAsNonRoot"] is True
    assert str(security["runAsUser"]) == uid
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["path"] == "/metrics"
        # The system label the profile's rules select comes from the Service's part-of.
        (relabel,) = endpoint["relabelings"]
        assert relabel["targetLabel"] == "system"
        assert relabel["sourceLabels"] == [
            "__meta_kubernetes_service_label_app_kubernetes_io_part_of"
        ]
    assert service["metadata"]["labels"]["app.kubernetes.io/part-of"] == profile.stem


def test_kustomization_builds() -> None:
    kubectl = require_binary("kubectl", "kubernetes-client")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(result.stdout)]
    assert sorted(kinds) == ["Deployment", "Service", "ServiceMonitor"]


# --- one image name; secrets the containers can read -------------------------------------


def test_one_image_name_and_tag_everywhere() -> None:
    """Dockerfile comment, compose, Kubernetes (manifest and kustomization) and the docs all
    say runbook-exporter:<version>; no second spelling of the exporter's image remains."""
    from exporter import __version__

    image = f"runbook-exporter:{__version__}"
    compose = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    assert compose["services"]["exporter"]["image"] == image
    assert f"docker build -t {image} ." in (REPO / "Dockerfile").read_text()
    deployment = yaml.safe_load((K8S / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == image
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["images"] == [{"name": "runbook-exporter", "newTag": __version__}]
    k8s_readme = (K8S / "README.md").read_text()
    assert f"docker build -t {image} ." in k8s_readme
    assert "docker push" in k8s_readme
    assert "kustomize edit set image" in k8s_readme
    texts = [REPO / "Dockerfile", *COMPOSE.rglob("*.yml"), *K8S.glob("*.yaml"), K8S / "README.md"]
    texts += [REPO / "README.md", *(REPO / "docs").glob("*.md")]
    spelled = re.compile(r"(?<![\w/.-])runbook-exporter:(?!9711\b)([\w.-]+)")
    for path in texts:
        for match in spelled.finditer(path.read_text()):
            assert match.group(1) == __version__, f"{path}: {match.group(0)}"


def test_compose_secrets_are_readable_by_the_containers_that_read_them() -> None:
    """secrets/README.md's commands, run as written, leave files that the user each reading
    container runs as (from the compose file) can read, and that another uid cannot."""
    compose = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    readers = {
        name: service.get("user")
        for name, service in compose["services"].items()
        if any(str(v).split(":")[0] == "./secrets" for v in service.get("volumes", []))
    }
    assert readers == {"alertmanager": "65534:65534"}, readers  # each reader names its user
    if os.geteuid() != 0:
        pytest.skip("chown to another uid needs root (CI runs as root)")
    readme = (COMPOSE / "secrets" / "README.md").read_text()
    (block,) = re.findall(r"```sh\n(.*?)```", readme, re.S)
    # Outside pytest's tmp tree (mode 0700 for root): the other uid must reach the files.
    with tempfile.TemporaryDirectory(prefix="compose-secrets-") as top:
        Path(top).chmod(0o755)
        check_secrets(Path(top), block, readers)


def check_secrets(top: Path, block: str, readers: dict[str, Any]) -> None:
    setpriv = require_binary("setpriv", "util-linux")
    secrets = top / "secrets"
    secrets.mkdir(mode=0o755)
    (secrets / "README.md").write_text("kept as is\n")
    script = block.replace("compose/secrets/", f"{secrets}/")
    subprocess.run(["sh", "-euc", script], check=True, timeout=30)
    secret = secrets / "smart-city-pager-routing-key"
    assert (secrets / "README.md").stat().st_uid == 0  # the glob leaves other files alone

    def read_as(user: str) -> subprocess.CompletedProcess[bytes]:
        uid, gid = user.split(":")
        return subprocess.run(
            [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "cat", str(secret)],
            capture_output=True,
            timeout=30,
            check=False,
        )

    for user in readers.values():
        done = read_as(str(user))
        assert done.returncode == 0, done.stderr
        assert done.stdout == b"R0UT1NGK3Y"
    assert read_as("10001:10001").returncode != 0  # the exporter's uid, for one


def test_systemd_install_steps_work_from_a_clone() -> None:
    """The docs' install block: every repository path it names exists at the clone's root,
    it installs exactly as the Dockerfile does (the hash-locked image.lock, then the
    package with no resolving), the venv it creates holds the unit's ExecStart, and the
    unit's own comment gives the same pip commands."""
    text = (REPO / "docs" / "deployment.md").read_text()
    section = text[text.index("## systemd") : text.index("\n## ", text.index("## systemd") + 1)]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    commands = [shlex.split(line.split("#")[0]) for line in block.splitlines() if line.strip()]
    for words in commands:
        for word in words:
            if re.match(r"^(profiles|requirements|deploy|compose)/", word):
                assert (REPO / word).exists(), word
    pips = [" ".join(w[1:]) for w in commands if w and w[0].endswith("/bin/pip")]
    dockerfile = (REPO / "Dockerfile").read_text()
    for pip in pips:
        assert pip.replace(" .", " '.'") in dockerfile or pip in dockerfile, pip
    assert any("requirements/image.lock" in p for p in pips)
    assert "runbook-exporter[" not in block  # not on PyPI: installs from the clone
    (venv,) = [w[3] for w in commands if w[:3] == ["python3", "-m", "venv"]]
    assert unit_exec_start()[0] == f"{venv}/bin/runbook-exporter"
    unit_comment = "\n".join(
        line.removeprefix("#").strip() for line in UNIT.read_text().splitlines()
    )
    for pip in pips:
        assert f"{venv}/bin/pip {pip}" in unit_comment, pip
