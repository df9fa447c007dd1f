"""deploy/: the compose file against the Compose specification's schema (vendored in
check-jsonschema), the Kubernetes manifests against Kubernetes' own schemas (vendored in
kubernetes-validate; KEDA's kinds have none there, their required fields are checked here),
the alert rules with `promtool` (Debian's `prometheus` package; skipped, saying so, when it is
not installed), and every metric the dashboard and the rules name exists in core/metrics.py.
All offline."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import ValidationError

from core import metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = "1.30.0"
SERVE = ["python", "manage.py", "serve", "--bind", "0.0.0.0:8000"]
METRIC = re.compile(r"\bagentmarket_[a-z0-9_]+")


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def _k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    return [
        (name, document)
        for name in kustomization["resources"]
        for document in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text())
        if document
    ]


def _by_kind(kind: str, name: str) -> dict[str, Any]:
    return next(
        d for _, d in _k8s_documents() if d["kind"] == kind and d["metadata"]["name"] == name
    )


# --- compose -------------------------------------------------------------------------------------


def test_the_compose_file_follows_the_compose_specification() -> None:
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(DEPLOY / "compose.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_compose_runs_every_part_with_health_checks_and_migrations_first() -> None:
    services = _compose()["services"]
    assert {"web", "worker", "beat", "postgres", "redis", "migrate"} <= set(services)
    assert services["web"]["command"][:5] == SERVE
    assert "--workers" in services["web"]["command"]
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    assert "pgvector" in services["postgres"]["image"]
    assert "migrate_schemas --shared" in " ".join(services["migrate"]["command"])
    assert "migrate_workspaces" in " ".join(services["migrate"]["command"])
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}
        assert depends["postgres"] == {"condition": "service_healthy"}
        assert services[name]["environment"]["PROMETHEUS_MULTIPROC_DIR"] == "/run/metrics"
        assert "/run/metrics" in services[name]["tmpfs"]  # empty at every start
    assert services["worker"]["environment"]["CELERY_METRICS_PORT"] == "9808"
    assert "healthcheck" in services["postgres"]
    assert "healthcheck" in services["redis"]


# --- Kubernetes ---------------------------------------------------------------------------------


def test_the_kubernetes_manifests_follow_kubernetes_schemas() -> None:
    checked = []
    for name, document in _k8s_documents():
        if document["apiVersion"].startswith("keda.sh/"):
            continue  # no schema for KEDA's kinds offline: the next test checks their fields
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
        checked.append((name, document["kind"]))
    assert {kind for _, kind in checked} >= {
        "ConfigMap",
        "Deployment",
        "Service",
        "Job",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    }


def test_the_validator_does_catch_a_broken_manifest() -> None:
    broken = _by_kind("Deployment", "agentmarket-web")
    broken = {**broken, "spec": {**broken["spec"], "replicas": "two"}}
    with pytest.raises(ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_web_pods_are_probed_and_serve_with_the_serve_command() -> None:
    container = _by_kind("Deployment", "agentmarket-web")["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert container["command"][:5] == SERVE
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    hosts = _by_kind("ConfigMap", "agentmarket")["data"]["DJANGO_ALLOWED_HOSTS"].split(",")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        headers = {h["name"]: h["value"] for h in container[probe]["httpGet"]["httpHeaders"]}
        assert headers["Host"] in hosts  # else Django answers 400 to the probe


def test_workers_scale_on_the_celery_queue_length_with_keda() -> None:
    worker = _by_kind("Deployment", "agentmarket-worker")
    scaled = _by_kind("ScaledObject", "agentmarket-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert 1 <= scaled["spec"]["minReplicaCount"] < scaled["spec"]["maxReplicaCount"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    # The list kombu keeps the production default queue in (CELERY_DEFAULT_QUEUE, "default").
    assert trigger["metadata"]["listName"] == "default"
    assert int(trigger["metadata"]["listLength"]) > 0
    auth = _by_kind("TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert auth["spec"]["secretTargetRef"][0]["parameter"] == "password"
    beat = _by_kind("Deployment", "agentmarket-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"


# --- Prometheus and Grafana ---------------------------------------------------------------------


def _rule_expressions() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def _dashboard_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "agentmarket.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


@pytest.mark.django_db
def test_every_metric_the_dashboard_and_the_rules_name_exists() -> None:
    known = metrics.series_names()
    named = {
        name
        for expression in _rule_expressions() + _dashboard_expressions()
        for name in METRIC.findall(expression)
    }
    assert named
    assert sorted(named - known) == []
    # ... and the dashboard shows each figure the issue asks for.
    shown = {n for e in _dashboard_expressions() for n in METRIC.findall(e)}
    for figure in (
        "agentmarket_http_requests_total",
        "agentmarket_celery_queue_length",
        "agentmarket_celery_tasks_total",
        "agentmarket_workflow_steps_total",
        "agentmarket_runs_finished_total",
        "agentmarket_model_tokens_total",
        "agentmarket_model_cost_usd_total",
        "agentmarket_response_cache_lookups_total",
        "agentmarket_circuit_breakers_open",
        "agentmarket_webhook_delivery_attempts_total",
        "agentmarket_billing_outbox_lag_seconds",
    ):
        assert figure in shown, figure


def test_the_dashboard_is_grafana_json_with_unique_panel_ids() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "agentmarket.json").read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"]
    assert all(
        target["datasource"]["uid"] == "${datasource}"
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    )


def test_promtool_accepts_the_rules_and_the_scrape_config(tmp_path: Path) -> None:
    # scripts/test installs Debian's prometheus (promtool) as root; without it this fails.
    assert shutil.which("promtool"), "promtool is missing: sudo apt-get install -y prometheus"
    rules = subprocess.run(
        ["promtool", "check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    # The config names the rules and the token by their paths in the container.
    (tmp_path / "alerts.yml").write_text((DEPLOY / "prometheus" / "alerts.yml").read_text())
    (tmp_path / "token").write_text("token")
    config = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    config = config.replace("/etc/prometheus/alerts.yml", str(tmp_path / "alerts.yml"))
    config = config.replace("/run/secrets/metrics_token", str(tmp_path / "token"))
    (tmp_path / "prometheus.yml").write_text(config)
    checked = subprocess.run(
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
