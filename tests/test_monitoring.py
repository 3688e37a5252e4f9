"""monitoring/: alert rules checked and unit-tested with promtool, the dashboard's queries
checked against the metrics RunMetrics really defines."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from copydesk.metrics import RunMetrics, metric_names

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "monitoring"
ALERTS = MONITORING / "alerts.yml"
ALERTS_TEST = MONITORING / "alerts_test.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
ALERT_NAMES = {
    "CopydeskDailyTokensSurge",
    "CopydeskBudgetNearlySpent",
    "CopydeskSharedBudgetNearlySpent",
    "CopydeskHighErrorRatio",
    "CopydeskRateLimited",
    "CopydeskModerationRejections",
}
#: Identifiers in PromQL that name a copydesk series.
COPYDESK_NAME = re.compile(r"\bcopydesk_[a-zA-Z0-9_:]+")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Debian package prometheus (apt-get install prometheus)")
    return path


def run_promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def defined_names() -> frozenset[str]:
    """Series names RunMetrics exposes, read from a live RunMetrics registry."""
    names = metric_names(RunMetrics("names-check").registry)
    assert "copydesk_prompt_tokens_total" in names  # the derivation itself works
    return names


# --------------------------------------------------------------------------- alert rules


def test_alert_rules_pass_promtool_check() -> None:
    result = run_promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def test_alert_rules_pass_their_unit_tests() -> None:
    result = run_promtool("test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_prometheus_config_is_valid() -> None:
    result = run_promtool("check", "config", str(MONITORING / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (">= 4 *", ">= 3 *"),  # +200..290 % would fire
        (") > 100000", ") > 0"),  # tiny volumes would fire
        ("count(present_over_time(copydesk_prompt_tokens_total[1h] offset 2d)) > 0", "vector(1)"),
        (">= 0.8", ">= 0.9"),
        ('outcome=~"ok|failed"', 'outcome=~".+"'),  # retried attempts would dilute the error ratio
        ('{outcome!="failed"}[15m]', "[15m]"),  # calls that gave up would dilute the 429 ratio
        ("> 0.20", "> 0.40"),
        ("[1h])) > 0\n          or", "[1m])) > 0\n          or"),
    ],
)
def test_the_unit_tests_catch_a_broken_rule(old: str, new: str, tmp_path: Path) -> None:
    """The promtool tests are not vacuous: each of these edits must make them fail."""
    text = ALERTS.read_text(encoding="utf-8")
    assert old in text
    (tmp_path / "alerts.yml").write_text(text.replace(old, new, 1), encoding="utf-8")
    shutil.copy(ALERTS_TEST, tmp_path / "alerts_test.yml")
    assert run_promtool("check", "rules", "alerts.yml", cwd=tmp_path).returncode == 0
    result = run_promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0, f"the unit tests still pass with {old!r} -> {new!r}"


def test_every_alert_has_cases_that_fire_and_cases_that_must_not() -> None:
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert alerts == ALERT_NAMES
    tests = yaml.safe_load(ALERTS_TEST.read_text(encoding="utf-8"))["tests"]
    fires = {c["alertname"] for t in tests for c in t.get("alert_rule_test", []) if c.get("exp_alerts")}
    quiet = {c["alertname"] for t in tests for c in t.get("alert_rule_test", []) if not c.get("exp_alerts")}
    assert fires == ALERT_NAMES
    assert quiet == ALERT_NAMES


def test_rules_and_their_test_series_use_only_defined_metrics() -> None:
    names = defined_names()
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            used = set(COPYDESK_NAME.findall(rule["expr"]))
            assert used, f"{rule['alert']} uses no copydesk metric"
            assert used <= names, f"{rule['alert']} uses undefined metrics {sorted(used - names)}"
    tests = yaml.safe_load(ALERTS_TEST.read_text(encoding="utf-8"))["tests"]
    series = {s["series"].split("{")[0] for t in tests for s in t["input_series"]}
    assert series <= names, f"test series of undefined metrics: {sorted(series - names)}"


def test_run_metrics_pass_promtool_lint(tmp_path: Path) -> None:
    m = RunMetrics("tech-blog")
    m.prepare("title", "gpt-4o-mini")
    m.record_usage("title", "gpt-4o-mini", 12, 7)
    m.record_request("title", "gpt-4o-mini", "ok", 0.4)
    m.set_budget(60_000, 59_981)
    m.record_article("published")
    m.record_moderation_flag()
    m.observe_qc(1.2)
    cumulative = m.accumulate_textfile(tmp_path / "copydesk.prom")
    for text in (m.render().decode(), cumulative.read_text(encoding="utf-8")):
        result = subprocess.run(
            [promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- dashboard


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panels(board: dict) -> list[dict]:
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # panels inside collapsed rows
    return [p for p in out if p.get("type") != "row"]


def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    board = dashboard()
    assert 36 <= board["schemaVersion"] <= 41
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    assert board["uid"] and board["title"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]


def test_dashboard_queries_use_only_defined_metrics() -> None:
    names = defined_names()
    used_everywhere: set[str] = set()
    for panel in panels(dashboard()):
        used = {name for t in panel["targets"] for name in COPYDESK_NAME.findall(t["expr"])}
        assert used, f"panel {panel['title']!r} queries no copydesk metric"
        assert used <= names, f"panel {panel['title']!r} uses undefined metrics {sorted(used - names)}"
        used_everywhere |= used
    # Every family RunMetrics defines appears on the dashboard.
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}
    shown = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used_everywhere}
    assert families == shown, f"not on the dashboard: {sorted(families - shown)}"


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query, with Grafana's variables replaced, as a recording rule."""
    grafana_vars = {"$__rate_interval": "5m", "$__range": "6h", "$__interval": "1m", "$pipeline": ".*"}
    rules = []
    for panel in panels(dashboard()):
        for target in panel["targets"]:
            expr = target["expr"]
            for var, value in grafana_vars.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, f"unknown Grafana variable in {target['expr']!r}"
            rules.append({"record": f"dashboard:panel{panel['id']}:{target['refId']}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
