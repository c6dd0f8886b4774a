"""The monitoring files in deploy/ against real tools and real data.

* ``promtool check config`` / ``check rules`` accept deploy/prometheus/, and ``promtool test rules`` runs
  deploy/prometheus/rules_test.yml, which has a firing and a silent case for every alert rule.
* The Grafana dashboard deploy/grafana/dashboards/streamad.json, loaded with ``grafana-foundation-sdk``, is proven
  without Grafana: ``streamad serve`` runs on real video (UCSD Ped2 test clips with anomalies, vtest.avi capped to
  every 2nd frame, a camera that is down) with a Kafka sink on a real broker, a real Prometheus scrapes it with
  deploy/prometheus/prometheus.yml and evaluates deploy/prometheus/rules.yml, and every PromQL query of every panel
  must return data there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import dashboard as gdash
from grafana_foundation_sdk.models import prometheus as gprom

from serve_process import REPO, ServeProcess, pipeline_yaml
from servers import PrometheusServer, free_port

PROM_DIR = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "streamad.json"
# What Grafana puts in for the dashboard's variables: "All" streams is the variable's allValue; $__rate_interval
# is 4 scrape intervals (1 s here) at least, as Grafana computes it.
RATE_INTERVAL = "8s"


def promtool(*args: str, cwd: Path = PROM_DIR) -> subprocess.CompletedProcess:
    """Run Debian's ``promtool`` (fails the test with the install command when it is missing)."""
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: apt-get install -y --no-install-recommends prometheus (scripts/install.sh)"
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def alert_names() -> list[str]:
    doc = yaml.safe_load((PROM_DIR / "rules.yml").read_text())
    return [r["alert"] for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_promtool_accepts_config_and_rules() -> None:
    res = promtool("check", "config", "prometheus.yml")  # also checks the rule files it names
    assert res.returncode == 0, res.stdout + res.stderr
    assert "rules.yml" in res.stdout and "SUCCESS" in res.stdout
    res = promtool("check", "rules", "rules.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(alert_names()) >= 5
    assert set(alert_names()) >= {"StreamadStreamDown", "StreamadFramesDropped", "StreamadProcessingLatencyHigh",
                                  "StreamadSpoolGrowing", "StreamadNoFrames"}


def test_promtool_rule_tests_fire_and_stay_silent_for_every_alert() -> None:
    doc = yaml.safe_load((PROM_DIR / "rules_test.yml").read_text())
    assert doc["rule_files"] == ["rules.yml"]
    fires, silent = set(), set()
    for case in doc["tests"]:
        for t in case.get("alert_rule_test", []):
            (fires if t["exp_alerts"] else silent).add(t["alertname"])
    assert set(alert_names()) <= fires, f"alerts without a firing case: {set(alert_names()) - fires}"
    assert set(alert_names()) <= silent, f"alerts without a silent case: {set(alert_names()) - silent}"
    res = promtool("test", "rules", "rules_test.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


# -- the dashboard against real data -----------------------------------------------------------------------------
def load_dashboard() -> gdash.Dashboard:
    """streamad.json through grafana-foundation-sdk's models (Prometheus queries become ``prometheus.Dataquery``)."""
    register_default_plugins()
    return gdash.Dashboard.from_json(json.loads(DASHBOARD.read_text()))


def panel_queries(dash: gdash.Dashboard) -> Iterator[tuple[str, str, gprom.Dataquery]]:
    """``(panel title, refId, query)`` of every target of every panel (rows included)."""
    for p in dash.panels or []:
        for child in ([p] if isinstance(p, gdash.Panel) else (p.panels or [])):
            for target in child.targets or []:
                assert isinstance(target, gprom.Dataquery), f"panel {child.title!r}: not a Prometheus query"
                yield child.title or "", target.ref_id, target


def substitute(expr: str) -> str:
    """Grafana's variable substitution for the queries: all streams, a fixed rate interval."""
    out = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$stream", ".*")
    assert "$" not in out, f"unknown variable left in {out!r}"
    return out


def test_dashboard_model_uses_the_stream_variable_and_the_metrics_of_streamad() -> None:
    dash = load_dashboard()
    assert dash.uid == "streamad" and dash.title
    variables = {v.name: v for v in dash.templating.list_val or []}
    assert variables["datasource"].type_val == gdash.VariableType.DATASOURCE
    assert variables["stream"].include_all and variables["stream"].all_value == ".*"
    queries = list(panel_queries(dash))
    text = " ".join(q.expr for _, _, q in queries)
    for metric in ("streamad_frames_processed_total", "streamad_frames_dropped_total",
                   "streamad_end_to_end_latency_seconds_bucket", "streamad_processing_latency_seconds_bucket",
                   "streamad_anomaly_score",
                   "streamad_anomaly_threshold", "streamad_events_total", "streamad_source_reconnects_total",
                   "streamad_spool_depth", "streamad_source_status"):
        assert metric in text, f"no panel shows {metric}"
    for title, ref, q in queries:
        if "stream" in q.expr and "by (stream" in q.expr:
            assert 'stream=~"$stream"' in q.expr, f"panel {title!r} {ref} ignores the stream variable"
        assert q.datasource == {"type": "prometheus", "uid": "${datasource}"}, f"panel {title!r} {ref}"


def prometheus_for(target: str, workdir: Path) -> PrometheusServer:
    """A Prometheus with deploy/prometheus/prometheus.yml and rules.yml, retargeted at ``target`` and at 1 s
    scrape and rule intervals (the test cannot wait 15 s per sample)."""
    prom = PrometheusServer([target], workdir)
    cfg = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
    cfg["rule_files"] = [str(PROM_DIR / f) for f in cfg["rule_files"]]
    jobs = {job["job_name"]: job for job in cfg["scrape_configs"]}
    jobs["streamad"].update(scrape_interval="1s", scrape_timeout="1s", static_configs=[{"targets": [target]}])
    jobs["prometheus"]["static_configs"] = [{"targets": [f"127.0.0.1:{prom.port}"]}]
    prom.config_path.write_text(yaml.safe_dump(cfg))
    return prom


def api(prom: PrometheusServer, path: str, **params: str) -> Any:
    url = f"{prom.url}/api/v1/{path}" + (("?" + urllib.parse.urlencode(params)) if params else "")
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]


@pytest.mark.timeout(240)
def test_every_dashboard_query_returns_data_from_a_real_serve(kafka_broker, ped2_model: Path, data_root: Path,
                                                              tmp_path: Path) -> None:
    dash = load_dashboard()
    queries = list(panel_queries(dash))
    assert len(queries) >= 10
    http_port = ServeProcess.port()
    down_camera = f"rtsp://127.0.0.1:{free_port()}/cam"  # nothing listens: the camera is down
    streams = [
        {"kind": "ucsd_ped", "category": "UCSDped2", "split": "test", "videos": ["Test001", "Test002", "Test003",
                                                                                "Test004"],
         "realtime": True},
        {"kind": "video_file", "id": "vtest", "path": str(data_root / "opencv" / "vtest.avi"), "realtime": True,
         "every_nth": 2},
        {"kind": "live", "id": "cam-down", "url": down_camera, "open_timeout_s": 1, "reconnect_initial_s": 0.2,
         "reconnect_max_s": 0.5},
    ]
    sinks = [{"kind": "kafka", "bootstrap_servers": kafka_broker.bootstrap, "topic": "deploy.alerts"},
             {"kind": "jsonl", "path": "alerts.jsonl"}]
    cfg = pipeline_yaml(tmp_path / "pipeline.yaml", streams, sinks,
                        runtime={"max_active_streams": 6, "http": {"port": http_port}})
    env = {"STREAMAD_DATA": str(data_root)}
    with ServeProcess(cfg, ped2_model, tmp_path, http_port, env=env) as serve, \
            prometheus_for(f"127.0.0.1:{http_port}", tmp_path / "prometheus") as prom:
        # the ped2 test clips raise alerts (Test001-Test004 have anomalies); the down camera keeps reconnecting
        prom.wait_for('streamad_events_total{type="start"} > 0', timeout_s=60)
        prom.wait_for('streamad_source_reconnects_total{stream="cam-down"} > 1', timeout_s=20)

        # the stream variable lists every stream
        names = set(api(prom, "label/stream/values", **{"match[]": "streamad_frames_in_total"}))
        assert names >= {"UCSDped2/Test001", "UCSDped2/Test004", "vtest", "cam-down"}, names

        # every query of every panel has data
        empty = []
        for title, ref, q in queries:
            expr = substitute(q.expr)
            try:
                prom.wait_for(expr, timeout_s=10)
            except TimeoutError:
                empty.append(f"{title} [{ref}]: {expr}")
        assert not empty, "panels without data:\n" + "\n".join(empty)

        # and what they show is what happened
        fps = {r["metric"]["stream"]: float(r["value"][1]) for r in prom.query(substitute(
            'sum by (stream) (rate(streamad_frames_processed_total{stream=~"$stream"}[$__rate_interval]))'))}
        assert all(fps[s] > 0 for s in ("UCSDped2/Test001", "vtest")), fps  # files play while the test looks
        assert fps.get("cam-down", 0.0) == 0.0, fps
        counts = {r["metric"]["__name__"]: float(r["value"][1]) for r in prom.query(
            '{__name__=~"streamad_frames_(in|dropped)_total", stream="vtest"}')}
        assert counts["streamad_frames_dropped_total"] / counts["streamad_frames_in_total"] == pytest.approx(
            0.5, abs=0.05), counts  # every_nth: 2
        dropped = prom.query('sum by (reason) (streamad_frames_dropped_total{stream="vtest"})')
        assert [r["metric"]["reason"] for r in dropped] == ["rate_cap"]
        status = prom.query('streamad_source_status{stream="cam-down", status=~"connecting|backoff"} == 1')
        assert status, "the down camera is not shown as reconnecting"
        score = prom.query('streamad_anomaly_threshold{stream="UCSDped2/Test001"}')
        assert float(score[0]["value"][1]) == 0.5
        spool = prom.query('streamad_spool_depth{sink=~"kafka:.*"}')
        assert spool and float(spool[0]["value"][1]) >= 0

        # Prometheus evaluates the deploy rules on this data: all healthy, the recordings have data, and the
        # down camera's alert is pending (it fires after 1 minute)
        groups = api(prom, "rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        n_rules = sum(len(g["rules"]) for g in yaml.safe_load((PROM_DIR / "rules.yml").read_text())["groups"])
        assert len(rules) == n_rules and all(r["health"] == "ok" for r in rules), [
            (r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
        for record in ("stream:streamad_frames_processed:rate1m", "stream:streamad_end_to_end_latency_seconds:p99_5m",
                       "stream:streamad_processing_latency_seconds:p99_5m",
                       "stream_reason:streamad_frames_dropped:rate1m", "stream_type:streamad_events:rate5m"):
            assert prom.wait_for(record, timeout_s=10)
        pending = prom.wait_for('ALERTS{alertname="StreamadStreamDown"}', timeout_s=10)
        assert {r["metric"]["stream"] for r in pending} == {"cam-down"}
        assert prom.query('up{job="streamad"}')[0]["value"][1] == "1"
        serve.stop(timeout_s=30)
    alerts = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert any(a["type"] == "start" and a["stream_id"].startswith("UCSDped2/Test") for a in alerts)
