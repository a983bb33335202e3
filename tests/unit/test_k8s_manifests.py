"""deploy/k8s, checked offline: every manifest the kustomization lists validates strictly against
the Kubernetes schemas (``kubernetes-validate``: no unknown field, no missing required one), the
list is the folder's, every reference (Secret, ConfigMap, claim, selector, port) resolves, images
are pinned, and the pods run the command lines that ``bikecount up`` and docker-compose.yaml run.

The manifests are plain files that kustomize only gathers (a namespace, a common label, the
image's registry): loading the listed files is what kustomize renders, minus those three.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bikecount import __version__
from bikecount.stack.addresses import allowed_hosts
from bikecount.stack.commands import mlflow_server_args, streamlit_args, uvicorn_args
from bikecount.stack.compose import COMPOSE_BIND_HOST, COMPOSE_PACKAGE_DIR, COMPOSE_PORTS
from bikecount.stack.services import DASHBOARD, DASHBOARD_SCRIPT, MLFLOW, REGMODEL, REGMODEL_APP

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
# The oldest release still supported by the big managed offers when this was written, and the
# newest the validator knows: autoscaling/v2 and policy/v1 are GA in both.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
APP_IMAGE = "bikecount-api"
API, MLFLOW_DEPLOYMENT, DASHBOARD_DEPLOYMENT = "regmodel", "mlflow", "dashboard"

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


@pytest.fixture(scope="module")
def manifests(kustomization: dict[str, Any]) -> list[Manifest]:
    """Every document of every file the kustomization lists, in its order."""
    documents = []
    for name in kustomization["resources"]:
        documents += [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]
    return documents


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    (found,) = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


def pod_specs(manifests: list[Manifest]) -> Iterator[tuple[str, dict[str, Any]]]:
    for manifest in manifests:
        if manifest["kind"] in ("Deployment", "StatefulSet"):
            yield manifest["metadata"]["name"], manifest["spec"]["template"]["spec"]


def containers(manifests: list[Manifest]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, spec in pod_specs(manifests):
        for container in spec["containers"]:
            yield f"{name}/{container['name']}", container


def container(manifests: list[Manifest], deployment: str) -> dict[str, Any]:
    (only,) = find(manifests, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return only


def test_the_kustomization_lists_every_manifest_of_the_folder(
    kustomization: dict[str, Any],
) -> None:
    files = sorted(path.name for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == files
    assert len(set(kustomization["resources"])) == len(files)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_strictly(manifests: list[Manifest], version: str) -> None:
    for manifest in manifests:
        name = f"{manifest['kind']}/{manifest['metadata']['name']}"
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} is not a valid {version} manifest: {exc.message}")


def test_images_are_pinned_and_the_apps_is_bikecounts_version(
    manifests: list[Manifest], kustomization: dict[str, Any]
) -> None:
    for name, spec in containers(manifests):
        image = spec["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} names no tag"
        assert tag != "latest", f"{name}: {image}"
        if repository == APP_IMAGE:
            assert tag == __version__, name
    (app,) = kustomization["images"]
    assert app["name"] == APP_IMAGE and app["newTag"] == __version__


def test_every_secret_and_setting_referenced_exists(manifests: list[Manifest]) -> None:
    secrets = {
        m["metadata"]["name"]: set(m.get("stringData", {})) | set(m.get("data", {}))
        for m in manifests
        if m["kind"] == "Secret"
    }
    settings = {
        m["metadata"]["name"]: set(m["data"]) for m in manifests if m["kind"] == "ConfigMap"
    }
    claims = {m["metadata"]["name"] for m in manifests if m["kind"] == "PersistentVolumeClaim"}
    for name, spec in pod_specs(manifests):
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets, name
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, name
    for name, spec in containers(manifests):
        for source in spec.get("envFrom", []):
            assert source["configMapRef"]["name"] in settings, name
        for variable in spec.get("env", []):
            reference = variable.get("valueFrom", {})
            if "secretKeyRef" in reference:
                ref = reference["secretKeyRef"]
                assert ref["key"] in secrets[ref["name"]], f"{name}: {variable['name']}"
            if "configMapKeyRef" in reference:
                ref = reference["configMapKeyRef"]
                assert ref["key"] in settings[ref["name"]], f"{name}: {variable['name']}"


def test_secrets_are_only_referenced_never_written_in_a_pod(manifests: list[Manifest]) -> None:
    for name, spec in containers(manifests):
        for variable in spec.get("env", []):
            if any(word in variable["name"] for word in ("KEY", "PASSWORD", "DB_URL")):
                assert "secretKeyRef" in variable.get("valueFrom", {}), f"{name}: {variable}"
    settings = find(manifests, "ConfigMap", "bikecount-settings")["data"]
    assert not any("KEY" in key and "FILE" not in key for key in settings if key != "BIKECOUNT_ENV")


def test_services_and_budgets_select_pods_that_exist(manifests: list[Manifest]) -> None:
    templates = {
        m["metadata"]["name"]: m["spec"]["template"]
        for m in manifests
        if m["kind"] in ("Deployment", "StatefulSet")
    }
    for manifest in manifests:
        if manifest["kind"] not in ("Service", "PodDisruptionBudget"):
            continue
        spec = manifest["spec"]
        selector = (
            spec["selector"] if manifest["kind"] == "Service" else spec["selector"]["matchLabels"]
        )
        chosen = [
            t for t in templates.values() if selector.items() <= t["metadata"]["labels"].items()
        ]
        assert len(chosen) == 1, manifest["metadata"]["name"]
        if manifest["kind"] == "Service":
            ports = {p["name"] for c in chosen[0]["spec"]["containers"] for p in c["ports"]}
            assert {p["targetPort"] for p in spec["ports"]} <= ports


def test_every_container_has_probes_requests_and_a_memory_limit(manifests: list[Manifest]) -> None:
    for name, spec in containers(manifests):
        assert {"readinessProbe", "livenessProbe"} <= set(spec), name
        resources = spec["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), name
        assert "memory" in resources["limits"], name


def test_the_api_is_ready_on_health_and_names_each_replica(manifests: list[Manifest]) -> None:
    api = container(manifests, API)
    assert api["readinessProbe"]["httpGet"]["path"] == "/health"
    assert api["startupProbe"]["httpGet"]["path"] == "/health"
    # Liveness asks nothing of MLflow: an MLflow outage must not restart every replica.
    assert api["livenessProbe"]["httpGet"]["path"] == "/metrics"
    [instance] = [v for v in api["env"] if v["name"] == "BIKECOUNT_API_INSTANCE"]
    assert instance["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    args = uvicorn_args(REGMODEL_APP, host=COMPOSE_BIND_HOST, port=COMPOSE_PORTS[REGMODEL])
    assert [*api["command"], *api["args"]] == ["python", "-m", "uvicorn", *args]
    assert api["ports"] == [{"name": "http", "containerPort": COMPOSE_PORTS[REGMODEL]}]
    assert {"/app/data", "/var/secrets/google"} <= {m["mountPath"] for m in api["volumeMounts"]}


def test_the_api_scales_between_two_and_more_and_keeps_one_through_disruptions(
    manifests: list[Manifest],
) -> None:
    deployment = find(manifests, "Deployment", API)
    assert "replicas" not in deployment["spec"]  # the autoscaler owns the count
    autoscaler = find(manifests, "HorizontalPodAutoscaler", API)["spec"]
    assert autoscaler["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": API,
    }
    assert 2 <= autoscaler["minReplicas"] < autoscaler["maxReplicas"]
    budget = find(manifests, "PodDisruptionBudget", API)["spec"]
    assert budget["minAvailable"] == 1
    assert budget["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_mlflow_runs_what_bikecount_up_runs_on_postgresql_and_the_bucket(
    manifests: list[Manifest],
) -> None:
    mlflow = container(manifests, MLFLOW_DEPLOYMENT)
    expected = mlflow_server_args(
        host=COMPOSE_BIND_HOST,
        port=COMPOSE_PORTS[MLFLOW],
        backend_store_uri="postgresql://mlflow:$(MLFLOW_DB_PASSWORD)@postgres:5432/mlflow",
        default_artifact_root="gs://$(BIKECOUNT_GCS_BUCKET)/mlflow",
        artifacts_destination="gs://$(BIKECOUNT_GCS_BUCKET)/mlflow-artifacts",
        hosts_allowed=allowed_hosts(COMPOSE_BIND_HOST, [MLFLOW_DEPLOYMENT]),
    )
    assert [*mlflow["command"], *mlflow["args"]] == ["python", "-m", "mlflow", *expected]
    # $(NAME) is expanded only from variables the container defines.
    defined = {variable["name"] for variable in mlflow["env"]}
    assert {"MLFLOW_DB_PASSWORD", "BIKECOUNT_GCS_BUCKET"} <= defined
    postgres = find(manifests, "StatefulSet", "postgres")["spec"]["template"]["spec"]
    database = {v["name"]: v.get("value") for v in postgres["containers"][0]["env"]}
    assert database["POSTGRES_USER"] == database["POSTGRES_DB"] == "mlflow"
    settings = find(manifests, "ConfigMap", "bikecount-settings")["data"]
    assert settings["BIKECOUNT_MLFLOW_TRACKING_URI"] == f"http://mlflow:{COMPOSE_PORTS[MLFLOW]}"
    assert settings["BIKECOUNT_ENV"] == "prod"


def test_the_dashboard_runs_what_bikecount_up_runs(manifests: list[Manifest]) -> None:
    dashboard = container(manifests, DASHBOARD_DEPLOYMENT)
    script = str(Path(COMPOSE_PACKAGE_DIR) / DASHBOARD_SCRIPT)
    args = streamlit_args(script, host=COMPOSE_BIND_HOST, port=COMPOSE_PORTS[DASHBOARD])
    assert [*dashboard["command"], *dashboard["args"]] == ["python", "-m", "streamlit", *args]
    env = {variable["name"]: variable.get("value") for variable in dashboard["env"]}
    assert env["BIKECOUNT_PIPELINE_API_URL"] == f"http://{API}:{COMPOSE_PORTS[REGMODEL]}"
