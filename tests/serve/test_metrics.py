"""``GET /metrics`` after real admissions: every series issue 12 names exists and counts what happened
(admissions by kind/decision/namespace, latency per endpoint, verdict-cache hits/misses/evictions,
registry requests and errors, policy evaluation time)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.infra import free_port
from tests.infra.registry import RegistryServer
from tests.serve.conftest import GateProcess, Signing, deployment, pod, push_signed, review


def families(gate: GateProcess) -> dict[str, str]:
    """Metric family name -> type, as a Prometheus server parses ``GET /metrics``."""
    text = gate.client.get("/metrics").text
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def test_metrics_count_admissions_latency_cache_registry_and_policy(
    start_gate, tmp_path: Path, registry_plain: RegistryServer, signing: Signing, rule_data_file: Path
) -> None:
    good, _ = push_signed(registry_plain, signing.trusted)
    other, _ = push_signed(registry_plain, signing.trusted)
    bad, _ = push_signed(registry_plain, signing.untrusted)
    gone = f"127.0.0.1:{free_port()}/app:v1"
    # What one cached verdict costs, to size a cache that holds one and evicts at the second.
    probe = start_gate(tmp_path / "probe", data=[str(rule_data_file)])
    assert probe.post("/validate", review(pod(good))).json()["response"]["allowed"]
    cost = probe.metric("provgate_verdict_cache_bytes")
    assert cost > 0
    probe.stop()

    gate = start_gate(
        tmp_path / "gate", data=[str(rule_data_file)], cache={"ttl": 600, "maxBytes": int(cost * 1.5)}
    )
    assert families(gate) | {
        "provgate_admission_requests": "counter",
        "provgate_request_duration_seconds": "histogram",
        "provgate_verdict_cache_hits": "counter",
        "provgate_verdict_cache_misses": "counter",
        "provgate_verdict_cache_evictions": "counter",
        "provgate_registry_requests": "counter",
        "provgate_registry_errors": "counter",
        "provgate_policy_evaluation_seconds": "histogram",
    } == families(gate)

    def admit(path: str, obj: dict, kind: tuple[str, str, str], namespace: str) -> dict:
        answer = gate.post(f"{path}?timeout=10s", review(obj, kind=kind, namespace=namespace))
        assert answer.status_code == 200, answer.text
        return answer.json()["response"]

    pod_kind, deploy_kind = ("", "v1", "Pod"), ("apps", "v1", "Deployment")
    assert admit("/validate", pod(good), pod_kind, "team")["allowed"] is True  # verified
    assert admit("/validate", pod(good), pod_kind, "team")["allowed"] is True  # from the cache
    assert admit("/validate", deployment(bad), deploy_kind, "shop")["allowed"] is False
    assert admit("/validate", pod(gone), pod_kind, "team")["allowed"] is False  # registry down
    assert "patch" in admit("/mutate", deployment(other), deploy_kind, "shop")
    assert gate.post("/v1/verify", {"image": other}).json()["allowed"] is True

    def count(name: str, **labels: str) -> float:
        return gate.metric(name, **labels)

    admissions = "provgate_admission_requests_total"
    assert count(admissions, endpoint="validate", kind="Pod", decision="allowed", namespace="team") == 2
    assert count(admissions, endpoint="validate", kind="Deployment", decision="denied", namespace="shop") == 1
    assert count(admissions, endpoint="validate", kind="Pod", decision="undecided", namespace="team") == 1
    assert count(admissions, endpoint="mutate", kind="Deployment", decision="pinned", namespace="shop") == 1
    latency = "provgate_request_duration_seconds_count"
    assert count(latency, endpoint="validate") == 4
    assert count(latency, endpoint="mutate") == 1 and count(latency, endpoint="verify") == 1
    assert count("provgate_request_duration_seconds_sum", endpoint="validate") > 0
    # good (verified, then a hit), bad, other: three verdicts in a cache that holds about one and a half.
    assert count("provgate_verdict_cache_hits_total") == 1
    assert count("provgate_verdict_cache_misses_total") == 3
    assert count("provgate_verdict_cache_evictions_total") >= 1
    assert count("provgate_verifications_total", outcome="allowed") == 2
    assert count("provgate_verifications_total", outcome="denied") == 1
    registry = registry_plain.host
    assert count("provgate_registry_requests_total", registry=registry, status="200") > 0
    assert count("provgate_registry_errors_total", registry=registry) == 0
    dead = gone.split("/")[0]
    assert count("provgate_registry_requests_total", registry=dead, status="error") >= 1
    assert count("provgate_registry_errors_total", registry=dead) >= 1
    assert count("provgate_policy_evaluation_seconds_count") == 3
    assert count("provgate_policy_evaluation_seconds_sum") > 0
    # The evicted verdict is verified again, not served.
    assert admit("/validate", pod(good), pod_kind, "team")["allowed"] is True
    assert count("provgate_verdict_cache_misses_total") == 4
