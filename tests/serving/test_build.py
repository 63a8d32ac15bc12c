"""`keel build` bundles: manifests checked against the Kubernetes JSON schemas (strict),
the Dockerfile parsed, requirements merged and parsed, errors, overwrite and atomic writes."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from keel.exceptions import AlreadyExistsError, InvalidSpecError
from keel.serving import _build
from keel.serving._build import (
    BuildModel,
    BuildSpec,
    kubernetes_name,
    render_bundle,
    to_yaml,
    write_bundle,
)

# Oldest and newest Kubernetes minor versions checked (kubernetes-validate ships both).
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())
MANIFESTS = ("k8s/deployment.yaml", "k8s/service.yaml", "k8s/hpa.yaml", "k8s/pdb.yaml")

CHURN3 = BuildModel(
    "models:/churn/3",
    {
        "python": "3.11.7",
        "keel": "0.1.0",
        "numpy": "2.1.0",
        "scikit-learn": "1.5.2",
        "skops": "",
    },
)
CHURN4 = BuildModel(
    "models:/churn/4",
    {"python": "3.11.9", "numpy": "2.1", "Scikit_Learn": "1.5.2", "skops": "0.10.0", "pandas": ""},
)


def make_spec(**changes: Any) -> BuildSpec:
    fields: dict[str, Any] = {
        "deployment": "churn",
        "models": (CHURN3, CHURN4),
        "keel_version": "0.1.0",
    }
    fields.update(changes)
    return BuildSpec(**fields)


def check_manifest(doc: dict[str, Any], version: str) -> None:
    """Validate one object against the strict Kubernetes schema (unknown fields fail)."""
    kubernetes_validate.validate(doc, version, strict=True)


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    write_bundle(make_spec(namespace="ml"), out)
    return out


# --------------------------------------------------------------------------- manifests


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("manifest", MANIFESTS)
def test_manifests_pass_the_strict_kubernetes_schemas(
    bundle: Path, manifest: str, version: str
) -> None:
    check_manifest(load(bundle / manifest), version)


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    node: Any = doc
    *parents, last = path.split(".")
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value


@pytest.mark.parametrize(
    ("manifest", "path", "value"),
    [
        ("k8s/deployment.yaml", "spec.replicas", "two"),  # wrong type
        ("k8s/deployment.yaml", "spec.template.spec.containers.0.readinessProbe.periodSecs", 5),
        ("k8s/deployment.yaml", "spec.template.spec.securityContext.runAsNonRoot", "yes"),
        ("k8s/service.yaml", "spec.ports", "http"),
        ("k8s/hpa.yaml", "spec.metrics.0.resource.target.averageUtilization", "70%"),
        ("k8s/pdb.yaml", "spec.maxUnavailabel", 1),  # misspelt field: strict mode
    ],
)
def test_the_schema_check_rejects_a_broken_manifest(
    bundle: Path, manifest: str, path: str, value: Any
) -> None:
    doc = load(bundle / manifest)
    check_manifest(copy.deepcopy(doc), K8S_VERSIONS[-1])  # the unbroken one passes
    _set(doc, path, value)
    with pytest.raises(kubernetes_validate.ValidationError):
        check_manifest(doc, K8S_VERSIONS[-1])


def test_deployment_probes_security_and_wiring(bundle: Path) -> None:
    dep = load(bundle / "k8s/deployment.yaml")
    assert dep["metadata"]["name"] == "keel-churn"
    assert dep["metadata"]["namespace"] == "ml"
    assert dep["metadata"]["annotations"]["keel.dev/models"] == "models:/churn/3,models:/churn/4"
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "keel-churn"
    assert labels["app.kubernetes.io/version"] == "0.1.0"
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8080"
    assert annotations["prometheus.io/path"] == "/metrics"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "keel-churn:0.1.0"
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/healthz"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    assert container["envFrom"] == [{"secretRef": {"name": "keel-store"}}]
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] != 0
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    env = {e["name"]: e["value"] for e in container["env"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts[env["KEEL_HOME"]]]
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_service_hpa_pdb_and_kustomization_point_at_the_deployment(bundle: Path) -> None:
    dep = load(bundle / "k8s/deployment.yaml")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    svc = load(bundle / "k8s/service.yaml")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    hpa = load(bundle / "k8s/hpa.yaml")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": dep["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    pdb = load(bundle / "k8s/pdb.yaml")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    kustomization = load(bundle / "k8s/kustomization.yaml")
    assert kustomization["namespace"] == "ml"
    for resource in kustomization["resources"]:
        assert (bundle / "k8s" / resource).is_file()
    assert sorted(kustomization["resources"]) == sorted(Path(m).name for m in MANIFESTS)


def test_spec_fields_reach_the_manifests(tmp_path: Path) -> None:
    spec = make_spec(
        port=9000,
        workers=4,
        replicas=3,
        min_replicas=3,
        max_replicas=7,
        target_cpu_percent=55,
        cpu_request="1",
        cpu_limit="1500m",
        memory_request="512Mi",
        memory_limit="1G",
        store_secret="prod-store",
        image="registry.example.com:5000/ml/churn@sha256:" + "a" * 64,
    )
    out = tmp_path / "out"
    write_bundle(spec, out)
    for manifest in MANIFESTS:
        check_manifest(load(out / manifest), K8S_VERSIONS[-1])
    dep = load(out / "k8s/deployment.yaml")
    assert "namespace" not in dep["metadata"]
    assert "namespace" not in load(out / "k8s/kustomization.yaml")
    assert dep["spec"]["replicas"] == 3
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["image"] == spec.image
    assert container["ports"][0]["containerPort"] == 9000
    assert container["envFrom"] == [{"secretRef": {"name": "prod-store"}}]
    assert container["resources"]["limits"] == {"cpu": "1500m", "memory": "1G"}
    assert dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9000"
    hpa = load(out / "k8s/hpa.yaml")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 7)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 55
    parser = DockerfileParser(path=str(out / "Dockerfile"))
    assert json.loads(parser.cmd)[-4:] == ["--port", "9000", "--workers", "4"]


@pytest.mark.parametrize(
    "value",
    ["yes", "on", "No", "null", "~", "1", "0.1.0", "1e3", "", "a: b", "#x", "- x", "x #y",
     "line\nbreak", "quote\"'", "tab\t", "ünï", "@at", "*star", "!bang", "{a}", "[a]", "%p",
     "true", "False", "0x1F", "0o7", ".5", "-3", "models:/churn/3"],
)  # fmt: skip
def test_yaml_writer_round_trips_awkward_strings(value: str) -> None:
    doc = {"k": value, "list": [value, {"a": value, "b": [value]}], "empty": {}, "none": []}
    assert yaml.safe_load(to_yaml(doc)) == doc


def test_yaml_writer_round_trips_every_manifest(bundle: Path) -> None:
    for manifest in (*MANIFESTS, "k8s/kustomization.yaml"):
        doc = load(bundle / manifest)
        assert yaml.safe_load(to_yaml(doc)) == doc


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_parses_with_the_expected_instructions(bundle: Path) -> None:
    parser = DockerfileParser(path=str(bundle / "Dockerfile"))
    assert parser.baseimage == "python:3.11-slim"
    instructions = [(i["instruction"], i["value"]) for i in parser.structure]
    kinds = [kind for kind, _ in instructions]
    users = [value for kind, value in instructions if kind == "USER"]
    assert len(users) == 1
    assert users[0].split(":")[0] not in ("0", "root")
    # pip runs as root before USER; the server runs as the unprivileged user.
    run_pip = next(v for k, v in instructions if k == "RUN" and "pip install" in v)
    assert "--no-cache-dir" in run_pip and "-r requirements.txt" in run_pip
    assert kinds.index("USER") > kinds.index("RUN")
    assert ("EXPOSE", "8080") in instructions
    assert json.loads(parser.cmd) == [
        "keel", "serve", "--deployment", "churn", "--host", "0.0.0.0",
        "--port", "8080", "--workers", "2",
    ]  # fmt: skip
    assert parser.envs["OMP_NUM_THREADS"] == "1"
    assert parser.envs["OPENBLAS_NUM_THREADS"] == "1"
    assert parser.envs["KEEL_HOME"] == _build.KEEL_HOME
    health = next(v for k, v in instructions if k == "HEALTHCHECK")
    assert "--interval=" in health and "--timeout=" in health
    assert "/healthz" in health and "curl" not in health


def _healthcheck_command(dockerfile: Path) -> list[str]:
    parser = DockerfileParser(path=str(dockerfile))
    value = next(i["value"] for i in parser.structure if i["instruction"] == "HEALTHCHECK")
    exec_form = value[value.index("CMD") + 3 :].strip()
    command = json.loads(exec_form)
    assert isinstance(command, list) and command[0] == "python"
    return [sys.executable, *command[1:]]


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_healthcheck_one_liner_reports_healthy_and_unhealthy(
    tmp_path: Path, health_server: ThreadingHTTPServer
) -> None:
    port = health_server.server_address[1]
    write_bundle(make_spec(port=port), tmp_path / "b")
    command = _healthcheck_command(tmp_path / "b" / "Dockerfile")
    ok = subprocess.run(command, capture_output=True, timeout=30, check=False)
    assert ok.returncode == 0, ok.stderr
    _Health.status = 503
    try:
        failing = subprocess.run(command, capture_output=True, timeout=30, check=False)
    finally:
        _Health.status = 200
    assert failing.returncode != 0
    health_server.shutdown()
    health_server.server_close()
    down = subprocess.run(command, capture_output=True, timeout=30, check=False)
    assert down.returncode != 0


# --------------------------------------------------------------------------- requirements


def _requirements(path: Path) -> dict[str, Requirement]:
    reqs: dict[str, Requirement] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith(("#", "--")):
            continue
        req = Requirement(line)
        assert canonicalize_name(req.name) not in reqs, f"duplicate {req.name}"
        reqs[canonicalize_name(req.name)] = req
    return reqs


def test_requirements_merge_the_models_pins(bundle: Path) -> None:
    reqs = _requirements(bundle / "requirements.txt")
    assert set(reqs) == {"keel", "numpy", "scikit-learn", "skops", "pandas"}
    assert reqs["keel"].extras == {"serving", "postgres", "s3"}
    assert str(reqs["keel"].specifier) == "==0.1.0"
    assert str(reqs["numpy"].specifier) == "==2.1.0"  # "2.1" and "2.1.0" are the same pin
    assert str(reqs["scikit-learn"].specifier) == "==1.5.2"  # spellings merged
    assert str(reqs["skops"].specifier) == "==0.10.0"  # unpinned in one model, pinned in other
    assert str(reqs["pandas"].specifier) == ""  # unpinned everywhere
    assert "python" not in reqs


def test_extra_index_urls_are_pip_options(tmp_path: Path) -> None:
    torch_model = BuildModel("models:/net/1", {"python": "3.12.1", "torch": "2.5.0+cpu"})
    spec = make_spec(
        models=(torch_model,), extra_index_urls=("https://download.pytorch.org/whl/cpu",)
    )
    files = render_bundle(spec)
    assert "--extra-index-url https://download.pytorch.org/whl/cpu\n" in files["requirements.txt"]
    assert "torch==2.5.0+cpu\n" in files["requirements.txt"]
    assert "FROM python:3.12-slim\n" in files["Dockerfile"]
    with pytest.raises(InvalidSpecError, match="not an http"):
        render_bundle(make_spec(extra_index_urls=("file:///etc",)))


def test_conflicting_pins_name_both_models_and_versions() -> None:
    other = BuildModel("models:/fraud/7", {"python": "3.11.2", "NumPy": "1.26.4"})
    with pytest.raises(InvalidSpecError) as info:
        render_bundle(make_spec(models=(CHURN3, other)))
    message = str(info.value)
    for part in ("models:/churn/3", "models:/fraud/7", "numpy==2.1.0", "NumPy==1.26.4"):
        assert part in message
    assert info.value.details["models"] == ("models:/churn/3", "models:/fraud/7")


def test_different_python_minor_versions_are_an_error() -> None:
    py312 = BuildModel("models:/fraud/7", {"python": "3.12.4"})
    with pytest.raises(InvalidSpecError, match=r"Python 3\.11 .*Python 3\.12") as info:
        render_bundle(make_spec(models=(CHURN3, py312)))
    assert "models:/churn/3" in str(info.value) and "models:/fraud/7" in str(info.value)


@pytest.mark.parametrize(
    ("requirements", "match"),
    [
        ({"numpy": ">=2"}, "exact version"),
        ({"numpy; os_name=='nt'": "1.0"}, "exact version"),
        ({"python": "three"}, "not a version"),
    ],
)
def test_malformed_model_requirements_are_rejected(
    requirements: dict[str, str], match: str
) -> None:
    with pytest.raises(InvalidSpecError, match=match):
        render_bundle(make_spec(models=(BuildModel("models:/m/1", requirements),)))


def test_models_without_python_use_the_running_interpreter() -> None:
    files = render_bundle(make_spec(models=(BuildModel("models:/m/1", {"numpy": ""}),)))
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"FROM python:{minor}-slim\n" in files["Dockerfile"]


def test_keel_extras_are_configurable() -> None:
    files = render_bundle(make_spec(keel_extras=("serving", "ml")))
    assert "\nkeel[ml,serving]==0.1.0\n" in files["requirements.txt"]


def test_a_model_saved_by_another_keel_is_noted_not_installed_twice() -> None:
    old = BuildModel("models:/old/1", {"python": "3.11.1", "keel": "0.0.9"})
    files = render_bundle(make_spec(models=(old,)))
    assert "models:/old/1 was saved with keel 0.0.9" in files["requirements.txt"]
    reqs = [ln for ln in files["requirements.txt"].splitlines() if ln.startswith("keel")]
    assert reqs == ["keel[postgres,s3,serving]==0.1.0"]


# --------------------------------------------------------------------------- names, fields


@pytest.mark.parametrize(
    ("deployment", "expected"),
    [
        ("churn", "keel-churn"),
        ("Churn_V2.prod", "keel-churn-v2-prod"),
        ("3d-model", "keel-3d-model"),
        ("a__b..c-", "keel-a-b-c"),
        ("x" * 58, "keel-" + "x" * 58),
    ],
)
def test_kubernetes_names_are_made_safe(deployment: str, expected: str) -> None:
    assert kubernetes_name(deployment) == expected
    files = render_bundle(make_spec(deployment=deployment))
    check_manifest(yaml.safe_load(files["k8s/service.yaml"]), K8S_VERSIONS[-1])
    # The server is told the deployment's real name, not the Kubernetes one.
    cmd = json.loads(files["Dockerfile"].split("\nCMD ")[-1])
    assert cmd[cmd.index("--deployment") + 1] == deployment


@pytest.mark.parametrize(
    ("deployment", "match"),
    [
        ("x" * 59, "at most 58 characters"),
        ("churn/v2", "not valid"),
        ("-churn", "not valid"),
        ("", "not valid"),
        ("churn v2", "not valid"),
    ],
)
def test_names_that_cannot_be_made_safe_are_explained(deployment: str, match: str) -> None:
    with pytest.raises(InvalidSpecError, match=match):
        render_bundle(make_spec(deployment=deployment))


def test_k8s_name_overrides_a_long_deployment_name() -> None:
    files = render_bundle(make_spec(deployment="x" * 100, k8s_name="churn-api"))
    assert yaml.safe_load(files["k8s/service.yaml"])["metadata"]["name"] == "churn-api"
    with pytest.raises(InvalidSpecError, match="DNS-1035"):
        render_bundle(make_spec(k8s_name="Churn_API"))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"namespace": "ML_team"}, "namespace"),
        ({"store_secret": "Keel Store"}, "store_secret"),
        ({"port": 0}, "port"),
        ({"workers": 0}, "workers"),
        ({"workers": True}, "workers"),
        ({"min_replicas": 5, "max_replicas": 3, "replicas": 4}, "max_replicas"),
        ({"replicas": 20}, "between min_replicas"),
        ({"cpu_request": "3"}, "exceeds cpu_limit"),
        ({"memory_request": "4Gi"}, "exceeds memory_limit"),
        ({"memory_limit": "2 GB"}, "quantity"),
        ({"cpu_limit": "0"}, "> 0"),
        ({"image": "Registry/Churn:latest"}, "image reference"),
        ({"image": "churn:bad tag"}, "image reference"),
        ({"keel_version": "latest"}, "keel_version"),
        ({"models": ()}, "empty"),
        ({"keel_extras": ("postgres",)}, "lacks 'serving'"),
        ({"keel_extras": ("serving", "postgress")}, "Did you mean 'postgres'"),
        ({"keel_extras": "serving"}, "tuple of extra names"),
        ({"models": (CHURN3, CHURN3)}, "listed twice"),
    ],
)
def test_bad_spec_fields_give_specific_errors(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidSpecError, match=match):
        render_bundle(make_spec(**changes))


def test_local_versions_make_a_valid_image_tag() -> None:
    files = render_bundle(make_spec(keel_version="0.1.0+g1234"))
    dep = yaml.safe_load(files["k8s/deployment.yaml"])
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "keel-churn:0.1.0-g1234"
    assert dep["metadata"]["labels"]["app.kubernetes.io/version"] == "0.1.0-g1234"
    check_manifest(dep, K8S_VERSIONS[-1])


def test_wheels_are_copied_and_preferred(tmp_path: Path) -> None:
    wheel = tmp_path / "keel-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    out = tmp_path / "out"
    paths = write_bundle(make_spec(wheels=(wheel,)), out)
    assert out / "wheels" / wheel.name in paths
    assert (out / "wheels" / wheel.name).read_bytes() == wheel.read_bytes()
    parser = DockerfileParser(path=str(out / "Dockerfile"))
    instructions = [(i["instruction"], i["value"]) for i in parser.structure]
    assert ("COPY", "wheels/ /tmp/wheels/") in instructions
    assert any(k == "RUN" and "--find-links /tmp/wheels" in v for k, v in instructions)
    assert "!wheels/" in (out / ".dockerignore").read_text()

    wrong = tmp_path / "keel-0.2.0-py3-none-any.whl"
    wrong.write_bytes(wheel.read_bytes())
    with pytest.raises(
        InvalidSpecError, match=re.escape("keel 0.2.0 but the bundle pins keel 0.1.0")
    ):
        render_bundle(make_spec(wheels=(wrong,)))
    with pytest.raises(InvalidSpecError, match="does not exist"):
        render_bundle(make_spec(wheels=(tmp_path / "missing-1.0-py3-none-any.whl",)))
    bad_name = tmp_path / "keel.whl"
    bad_name.write_bytes(b"")
    with pytest.raises(InvalidSpecError, match="not a wheel file name"):
        render_bundle(make_spec(wheels=(bad_name,)))


# --------------------------------------------------------------------------- writing


EXPECTED_FILES = {
    ".dockerignore",
    ".keel-build.json",
    "Dockerfile",
    "README.md",
    "requirements.txt",
    *MANIFESTS,
    "k8s/kustomization.yaml",
}


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_write_bundle_returns_the_files_it_wrote(tmp_path: Path) -> None:
    out = tmp_path / "new" / "bundle"
    paths = write_bundle(make_spec(), out)
    assert {p.relative_to(out).as_posix() for p in paths} == EXPECTED_FILES
    assert _tree(out) == EXPECTED_FILES
    assert sorted(p.name for p in out.parent.iterdir()) == ["bundle"]  # no temp dirs left
    readme = (out / "README.md").read_text()
    assert "docker build -t keel-churn:0.1.0 ." in readme
    assert "kubectl apply -k k8s/" in readme
    assert json.loads((out / ".keel-build.json").read_text())["name"] == "keel-churn"


def test_an_empty_existing_directory_is_used(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    write_bundle(make_spec(), out)
    assert _tree(out) == EXPECTED_FILES


def test_a_non_empty_directory_is_refused_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    write_bundle(make_spec(), out)
    before = (out / "Dockerfile").read_text()
    with pytest.raises(AlreadyExistsError, match=r"not empty.*overwrite"):
        write_bundle(make_spec(workers=8), out)
    assert (out / "Dockerfile").read_text() == before


def test_overwrite_replaces_an_earlier_bundle_entirely(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    write_bundle(make_spec(), out)
    (out / "stale.txt").write_text("from an older build")
    write_bundle(make_spec(workers=8), out, overwrite=True)
    assert _tree(out) == EXPECTED_FILES
    assert '"--workers", "8"' in (out / "Dockerfile").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_overwrite_never_replaces_a_directory_that_is_not_a_bundle(tmp_path: Path) -> None:
    out = tmp_path / "project"
    out.mkdir()
    (out / "train.py").write_text("print('mine')")
    with pytest.raises(AlreadyExistsError, match="not a bundle written by keel build"):
        write_bundle(make_spec(), out, overwrite=True)
    assert _tree(out) == {"train.py"}


def test_a_file_in_the_way_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.write_text("x")
    with pytest.raises(InvalidSpecError, match="not a directory"):
        write_bundle(make_spec(), out, overwrite=True)


def test_bad_input_touches_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with pytest.raises(InvalidSpecError):
        write_bundle(make_spec(deployment="bad/name"), out)
    assert list(tmp_path.iterdir()) == []


def test_a_failure_mid_write_leaves_no_partial_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "bundle"
    write_bundle(make_spec(), out)
    before = {name: (out / name).read_bytes() for name in EXPECTED_FILES}
    real_write = _build._write_file
    calls: list[Path] = []

    def failing_write(path: Path, data: bytes) -> None:
        calls.append(path)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(_build, "_write_file", failing_write)
    with pytest.raises(OSError, match="No space left"):
        write_bundle(make_spec(workers=8), out, overwrite=True)
    # Files went to a temporary sibling, never into the bundle, and it was removed.
    assert all(out not in path.parents for path in calls)
    assert {name: (out / name).read_bytes() for name in EXPECTED_FILES} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]

    fresh = tmp_path / "fresh"
    calls.clear()
    with pytest.raises(OSError, match="No space left"):
        write_bundle(make_spec(), fresh)
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_overwrite_swaps_without_the_exchange_syscall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "bundle"
    write_bundle(make_spec(), out)
    monkeypatch.setattr(_build, "exchange", lambda a, b: False)
    write_bundle(make_spec(workers=3), out, overwrite=True)
    assert '"--workers", "3"' in (out / "Dockerfile").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_the_example_in_docs_build_md_is_current() -> None:
    """docs/build.md shows the real output for its example spec."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "build.md").read_text()
    spec = BuildSpec(
        deployment="churn",
        models=(
            BuildModel(
                "models:/churn/3",
                {
                    "python": "3.11.7",
                    "keel": "0.1.0",
                    "numpy": "2.1.0",
                    "scikit-learn": "1.5.2",
                    "skops": "0.10.0",
                },
            ),
            BuildModel(
                "models:/churn/4",
                {
                    "python": "3.11.9",
                    "keel": "0.1.0",
                    "numpy": "2.1.0",
                    "scikit-learn": "1.5.2",
                    "pandas": "2.2.3",
                },
            ),
        ),
        keel_version="0.1.0",
        image="registry.example.com/ml/keel-churn:0.1.0",
        namespace="ml",
    )
    files = render_bundle(spec)
    for name in ("Dockerfile", "requirements.txt", *MANIFESTS, "k8s/kustomization.yaml"):
        assert f"`{name}`\n\n```" in docs
        assert files[name] in docs, f"docs/build.md shows an outdated {name}"
