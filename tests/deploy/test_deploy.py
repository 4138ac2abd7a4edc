"""The deployment files (Dockerfile, docker-compose.yml, k8s/) against their schemas and
against the package: every command they run parses as a real glacierflow or dask command,
every probe path answers on the in-process apps, ports, images and selectors agree, and no
secret is written in them."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import httpx
import kubernetes_validate
import pytest
import yaml
from conftest import serving

from glacierflow.services.app import PARTS, create_app
from glacierflow.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.transactions.yml")
KUBERNETES_VERSION = "1.30.0"  # the oldest release the manifests are held to (README)
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/postgres"  # port 1: refused at once
SCHEDULER = "tcp://dask-scheduler:8786"
GLACIERFLOW_IMAGE = "glacierflow"
API_PARTS = ("stac", "timeseries", "tiles")


# -- reading the files ------------------------------------------------------------------------


def compose(name: str = "docker-compose.yml") -> dict:
    """A compose file with its YAML anchors and merge keys resolved, as compose reads it."""
    return yaml.safe_load((ROOT / name).read_text())


def kustomize(folder: Path = ROOT / "k8s") -> list[dict]:
    """The objects `kubectl apply -k` creates: the resources with the namespace and image
    transformations, which are the only ones the kustomization may use (so that this
    rendering stays kustomize's)."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    used = set(kustomization) - {"apiVersion", "kind"}
    assert used <= {"namespace", "images", "resources"}, f"unrendered kustomize fields: {used}"
    images = {i["name"]: f"{i['newName']}:{i['newTag']}" for i in kustomization["images"]}
    objects = []
    for resource in kustomization["resources"]:
        for document in yaml.safe_load_all((folder / resource).read_text()):
            document["metadata"]["namespace"] = kustomization["namespace"]
            for container in containers(document):
                container["image"] = images.get(container["image"], container["image"])
            objects.append(document)
    return objects


def pod_spec(manifest: dict) -> dict | None:
    spec = manifest.get("spec", {})
    if manifest["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec.get("template", {}).get("spec")


def containers(manifest: dict) -> list[dict]:
    spec = pod_spec(manifest)
    return [] if spec is None else [*spec.get("initContainers", []), *spec["containers"]]


def workloads(objects: list[dict]) -> Iterator[tuple[dict, dict]]:
    for manifest in objects:
        for container in containers(manifest):
            yield manifest, container


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


# -- the commands: parsed by the package's own command-line interfaces -------------------------


def parse_command(argv: list[str]) -> click.Context:
    """The context the command line would run with (options checked, nothing run); a
    UsageError for a command or option the package does not have."""
    if argv[0] == "glacierflow":
        from glacierflow.cli import main as command

        name, rest = "glacierflow", argv[1:]
    elif argv[:2] == ["dask", "scheduler"]:
        from distributed.cli.dask_scheduler import main as command

        name, rest = "dask scheduler", argv[2:]
    elif argv[:2] == ["dask", "worker"]:
        from distributed.cli.dask_worker import main as command

        name, rest = "dask worker", argv[2:]
    else:
        raise AssertionError(f"not a glacierflow or dask command: {argv}")
    parent = None
    while isinstance(command, click.Group):
        parent = click.Context(command, info_name=name, parent=parent)
        name, *rest = rest
        sub = command.get_command(parent, name)
        if sub is None:
            raise click.UsageError(f"no such command {name!r} in {argv}")
        command = sub
    return command.make_context(name, list(rest), parent=parent)


def compose_commands() -> list[tuple[str, list[str]]]:
    services = compose()["services"]
    return [(n, s["command"]) for n, s in services.items() if "command" in s]


def k8s_commands() -> list[tuple[str, list[str]]]:
    return [
        (f"{m['kind']}/{m['metadata']['name']}", c["command"] + c.get("args", []))
        for m, c in workloads(kustomize())
        if c["image"].startswith(f"{GLACIERFLOW_IMAGE}:")
    ]


def dockerfile_instruction(keyword: str) -> list[str]:
    """The exec form (JSON) of the Dockerfile's last `keyword` instruction, joined over
    line continuations."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found = re.findall(rf"^{keyword}\s+(.*)$", text, flags=re.M)
    assert found, keyword
    return json.loads(found[-1][found[-1].index("[") :])


def test_the_parser_refuses_what_the_package_does_not_have() -> None:
    with pytest.raises(click.UsageError):
        parse_command(["glacierflow", "serve", "--only", "dashboard"])
    with pytest.raises(click.UsageError):
        parse_command(["glacierflow", "catalog", "migrate"])
    with pytest.raises(click.UsageError):
        parse_command(["dask", "worker", SCHEDULER, "--threads", "2"])


@pytest.mark.parametrize("where", ["compose", "k8s", "Dockerfile"])
def test_every_command_is_one_the_package_has(where: str) -> None:
    commands = {
        "compose": compose_commands,
        "k8s": k8s_commands,
        "Dockerfile": lambda: [("CMD", dockerfile_instruction("CMD"))],
    }[where]()
    assert commands
    for name, argv in commands:
        parse_command(argv)  # raises, naming the problem
        assert name  # (for the failure's traceback)


def test_glacierflow_help_runs_for_each_command_the_files_use() -> None:
    """The installed entry point, as a container runs it (not only the parser)."""
    used = {tuple(argv[1:3]) for _, argv in compose_commands() + k8s_commands()}
    for words in {w[:1] if w[0] != "catalog" else w for w in used if w}:
        if words[0] in ("scheduler", "worker"):
            continue
        done = subprocess.run(
            [Path(sys.executable).with_name("glacierflow"), *words, "--help"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, (words, done.stderr)


# -- the compose file -------------------------------------------------------------------------


def check_compose_schema(*paths: Path) -> subprocess.CompletedProcess:
    """The compose specification's schema, as check-jsonschema vendors it (offline)."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
        + [str(p) for p in paths],
        capture_output=True,
        text=True,
        check=False,
    )


def test_compose_files_follow_the_compose_specification(tmp_path: Path) -> None:
    done = check_compose_schema(*(ROOT / name for name in COMPOSE_FILES))
    assert done.returncode == 0, done.stdout + done.stderr
    broken = compose()
    broken["services"]["stac"]["helthcheck"] = broken["services"]["stac"].pop("healthcheck")
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken))
    assert check_compose_schema(tmp_path / "broken.yml").returncode != 0


def test_compose_parts_ports_and_health_checks_agree() -> None:
    services = compose()["services"]
    for part in API_PARTS:
        service = services[part]
        argv = service["command"]
        assert argv[:4] == ["glacierflow", "serve", "--only", part]
        port = option(argv, "--port")
        assert [p.rsplit(":", 1)[1] for p in service["ports"]] == [port]
        assert f"127.0.0.1:{port}/healthz" in " ".join(service["healthcheck"]["test"])
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["glacierflow", "catalog", "init"]
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    scheduler = services["dask-scheduler"]["command"]
    dashboard = option(scheduler, "--dashboard-address").lstrip(":")
    assert f"127.0.0.1:{dashboard}/health" in " ".join(
        services["dask-scheduler"]["healthcheck"]["test"]
    )
    worker = services["dask-worker"]["command"]
    assert worker[2] == f"tcp://dask-scheduler:{option(scheduler, '--port')}" == SCHEDULER
    assert services["watch"]["environment"]["GLACIERFLOW_DASK_SCHEDULER"] == SCHEDULER
    assert services["web"]["profiles"] == ["browser"]  # STAC Browser: optional


def test_compose_runs_one_image_and_shares_one_data_volume() -> None:
    services = compose()["services"]
    ours = {n: s for n, s in services.items() if n != "db"}
    assert {s["image"] for s in ours.values()} == {"${GLACIERFLOW_IMAGE:-glacierflow:local}"}
    assert [n for n, s in ours.items() if "build" in s] == ["migrate"]  # built once
    for name, service in ours.items():
        if name != "dask-scheduler":
            assert "data:/data" in service["volumes"], name
            assert service["environment"]["GLACIERFLOW_DATA_DIR"] == "/data", name


# -- the Kubernetes manifests -----------------------------------------------------------------


def test_k8s_manifests_follow_the_kubernetes_schemas() -> None:
    objects = kustomize()
    for manifest in objects:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    misspelt = json.loads(json.dumps(by_kind(objects, "Deployment")["stac"]))
    misspelt["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, KUBERNETES_VERSION, strict=True)


def test_k8s_has_the_parts_a_deployment_needs() -> None:
    objects = kustomize()
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for part in API_PARTS:
        for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
            assert (kind, part) in kinds
    for expected in [
        ("Job", "migrate"),
        ("Deployment", "dask-scheduler"),
        ("Service", "dask-scheduler"),
        ("Deployment", "dask-worker"),
        ("Deployment", "watch"),
        ("CronJob", "run"),
        ("ConfigMap", "glacierflow-config"),
        ("PersistentVolumeClaim", "glacierflow-data"),
    ]:
        assert expected in kinds
    assert {o["metadata"]["namespace"] for o in objects} == {"glacierflow"}


def test_k8s_containers_request_resources_and_run_one_image_unprivileged() -> None:
    for manifest, container in workloads(kustomize()):
        where = f"{manifest['kind']}/{manifest['metadata']['name']}"
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
        assert "memory" in container["resources"]["limits"], where
        if manifest["metadata"]["name"] == "postgres":
            continue
        assert container["image"] == f"{GLACIERFLOW_IMAGE}:local", where
        security = pod_spec(manifest)["securityContext"]
        assert security["runAsNonRoot"] and security["runAsUser"] != 0, where
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, where


def test_k8s_probes_ports_and_services_agree() -> None:
    objects = kustomize()
    deployments = by_kind(objects, "Deployment")
    for manifest, container in workloads(objects):
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if "httpGet" in container.get(probe, {}):
                assert container[probe]["httpGet"]["port"] in ports, (manifest, probe)
        argv = container.get("command", [])
        if argv[:2] == ["glacierflow", "serve"]:
            assert ports == {"http": int(option(argv, "--port"))}
        if argv[:2] == ["dask", "scheduler"]:
            assert ports["scheduler"] == int(option(argv, "--port"))
            assert ports["dashboard"] == int(option(argv, "--dashboard-address").lstrip(":"))
        if argv[:2] == ["dask", "worker"]:
            assert argv[2] == SCHEDULER
            assert ports["dashboard"] == int(option(argv, "--dashboard-address").lstrip(":"))
    for name, service in by_kind(objects, "Service").items():
        selected = [o for o in objects if matches(service["spec"]["selector"], pod_labels(o))]
        assert len(selected) == 1, name
        named = {p["name"] for c in containers(selected[0]) for p in c.get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= named, name
    config = by_kind(objects, "ConfigMap")["glacierflow-config"]["data"]
    assert config["GLACIERFLOW_DASK_SCHEDULER"] == SCHEDULER
    database = by_kind(objects, "ConfigMap")["glacierflow-database"]["data"]
    scheduler = by_kind(objects, "Service")["dask-scheduler"]["spec"]["ports"]
    assert {"name": "scheduler", "port": 8786, "targetPort": "scheduler"} in scheduler
    assert database["PGHOST"] in by_kind(objects, "Service")  # the in-cluster database
    assert set(deployments) >= set(API_PARTS)


def pod_labels(manifest: dict) -> dict:
    if pod_spec(manifest) is None or manifest["kind"] == "CronJob":
        return {}
    return manifest["spec"]["template"]["metadata"]["labels"]


def matches(selector: dict, labels: dict) -> bool:
    return bool(labels) and all(labels.get(k) == v for k, v in selector.items())


def test_k8s_budgets_and_autoscalers_hold_the_api_deployments() -> None:
    objects = kustomize()
    deployments = by_kind(objects, "Deployment")
    for name, budget in by_kind(objects, "PodDisruptionBudget").items():
        selector = budget["spec"]["selector"]["matchLabels"]
        held = [d for d in deployments.values() if matches(selector, pod_labels(d))]
        assert [d["metadata"]["name"] for d in held] == [name]
        # a budget a single replica could never satisfy would block node drains
        assert held[0]["spec"]["replicas"] > budget["spec"]["minAvailable"]
    for name, autoscaler in by_kind(objects, "HorizontalPodAutoscaler").items():
        target = autoscaler["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
        deployment = deployments[name]
        assert autoscaler["spec"]["minReplicas"] == deployment["spec"]["replicas"]
        # utilization is measured against the request: every container must have one
        for container in containers(deployment):
            assert "cpu" in container["resources"]["requests"]
    assert set(by_kind(objects, "PodDisruptionBudget")) == set(API_PARTS)


def test_k8s_liveness_never_asks_the_database_readiness_does() -> None:
    for _, container in workloads(kustomize()):
        if container.get("command", [])[:2] == ["glacierflow", "serve"]:
            assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
            assert container["startupProbe"]["httpGet"]["path"] == "/livez"
            assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"


# -- the probes on the apps themselves ---------------------------------------------------------


def test_health_paths_of_the_files_answer_on_the_parts_with_the_database_down(
    tmp_path: Path,
) -> None:
    """Liveness stays 200 while readiness is 503: a database outage takes the parts out of
    service without restarting them (they recover by themselves when it is back)."""
    paths = {
        (c["livenessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["path"])
        for _, c in workloads(kustomize())
        if c.get("command", [])[:2] == ["glacierflow", "serve"]
    }
    compose_ready = {
        re.search(
            r"127\.0\.0\.1:\d+(/\w+)", " ".join(compose()["services"][p]["healthcheck"]["test"])
        )[1]
        for p in API_PARTS
    }
    image_live = re.search(r"(/\w+)'", " ".join(dockerfile_instruction("HEALTHCHECK")))[1]
    assert paths == {("/livez", "/healthz")} and compose_ready == {"/healthz"}
    settings = Settings(data_dir=tmp_path)
    for factory in [*PARTS.values(), create_app]:
        with serving(factory(settings, UNREACHABLE)) as url:
            assert httpx.get(f"{url}{image_live}", timeout=10).json() == {"status": "up"}
            for live, ready in paths:
                assert httpx.get(f"{url}{live}", timeout=10).status_code == 200, factory
                assert httpx.get(f"{url}{ready}", timeout=10).status_code == 503, factory


# -- secrets ----------------------------------------------------------------------------------

DEPLOYMENT_FILES = [
    "Dockerfile",
    ".dockerignore",
    *COMPOSE_FILES,
    *(str(p.relative_to(ROOT)) for p in sorted((ROOT / "k8s").glob("*.yaml"))),
]
# an environment variable's name (compose and Kubernetes fields like secretName are not)
SECRET_NAME = re.compile(r"^[A-Z0-9_]*(PASSWORD|API_KEY|SECRET|TOKEN)[A-Z0-9_]*$")


def settings_in(path: str) -> Iterator[tuple[str, object]]:
    """(name, value) of every environment variable, compose entry or ENV the file sets."""
    text = (ROOT / path).read_text()
    if path == "Dockerfile":
        for line in text.replace("\\\n", " ").splitlines():
            if line.startswith(("ENV", "ARG")):
                yield from (tuple(w.split("=", 1)) for w in shlex.split(line)[1:] if "=" in w)
        return
    if path == ".dockerignore":
        return
    for document in yaml.safe_load_all(text):
        yield from walk(document)


def walk(node: object) -> Iterator[tuple[str, object]]:
    if isinstance(node, dict):
        if set(node) >= {"name"} and ("value" in node or "valueFrom" in node):
            yield node["name"], node.get("value", node.get("valueFrom"))  # a container's env
        for key, value in node.items():
            if not isinstance(value, dict | list):
                yield str(key), value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


@pytest.mark.parametrize("path", DEPLOYMENT_FILES)
def test_no_secret_is_written_in_the_deployment_files(path: str) -> None:
    for name, value in settings_in(path):
        if not SECRET_NAME.search(name):
            continue
        if isinstance(value, dict):  # Kubernetes: from a Secret object
            assert "secretKeyRef" in value, (path, name)
        else:
            assert name.upper().endswith("_FILE"), (path, name, "must name a file")
            assert str(value).startswith("/run/secrets/"), (path, name)
    text = (ROOT / path).read_text()
    assert not re.search(r"postgres(ql)?://[^\s/@:]+:[^\s/@]+@", text), path  # a URL password
    assert "kind: Secret" not in text, path


def test_secrets_reach_the_containers_only_as_files_or_secret_references() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"secrets", ".env", ".git", ".venv"} <= set(ignored)
    assert "secrets/" in (ROOT / ".gitignore").read_text().split()
    base = compose()
    assert set(base["secrets"]) == {"db_password"}
    assert base["secrets"]["db_password"]["file"].startswith("./secrets/")
    # STAC writes: closed unless the transactions file is added, which gives the key as a file
    assert not any(
        "API_KEY" in k for s in base["services"].values() for k in s.get("environment", {})
    )
    opened = compose("docker-compose.transactions.yml")
    key_file = opened["services"]["stac"]["environment"][
        "GLACIERFLOW_STAC_TRANSACTIONS_API_KEY_FILE"
    ]
    assert (
        key_file == "/run/secrets/stac_api_key"
        and "stac_api_key" in opened["services"]["stac"]["secrets"]
    )
    # Kubernetes: the key is optional (absent: closed), the database password is a mounted file
    for manifest, container in workloads(kustomize()):
        for variable in container.get("env", []):
            if "API_KEY" in variable["name"]:
                assert manifest["metadata"]["name"] == "stac"
                assert variable["valueFrom"]["secretKeyRef"]["optional"] is True
        spec = pod_spec(manifest)
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                # readable by the unprivileged user through the pod's group only
                assert (
                    volume["secret"]["defaultMode"] == 0o440
                    and "fsGroup" in spec["securityContext"]
                )


def test_the_database_password_reaches_exactly_the_containers_that_connect() -> None:
    """Those given the catalog's address get the password file where PGPASSWORD_FILE says;
    the others (the Dask workers) get neither."""
    objects = kustomize()
    password_file = by_kind(objects, "ConfigMap")["glacierflow-database"]["data"]["PGPASSWORD_FILE"]
    for manifest, container in workloads(objects):
        if manifest["metadata"]["name"] == "postgres":
            continue
        sources = {s["configMapRef"]["name"] for s in container.get("envFrom", [])}
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        connects = "glacierflow-database" in sources
        assert connects == (str(Path(password_file).parent) in mounts), manifest["metadata"]
        assert connects == (container["command"][0] == "glacierflow"), manifest["metadata"]
    for name, service in compose()["services"].items():
        environment = service.get("environment", {})
        if name != "db":
            given = "db_password" in service.get("secrets", [])
            assert given == ("PGPASSWORD_FILE" in environment), name
            assert given == (environment.get("PGPASSWORD_FILE") == "/run/secrets/db_password")
            assert given == (service["command"][0] == "glacierflow"), name


def test_the_dockerfile_builds_from_the_repository_as_a_non_root_user() -> None:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, flags=re.M)
    assert len(stages) >= 3 and stages[-1] == "runtime"
    user = re.findall(r"^USER\s+(\S+)", text, flags=re.M)[-1]
    assert user.split(":")[0] not in ("0", "root")
    for line in re.findall(r"^COPY\s+(?!--from)(.*)$", text, flags=re.M):
        *sources, _ = line.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
