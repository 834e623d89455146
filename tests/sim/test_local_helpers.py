"""Pure helpers of the local deployer and the smoke suite: ports, metrics text, readiness, degeneracy."""

from __future__ import annotations

import socket

from harness.run.prometheus import prometheus_sum
from harness.run.sim.local import count_generate_instances, free_ports, process_env
from harness.run.smoke import degeneracy

METRICS = """\
# HELP dynamo_component_requests_total Total requests
dynamo_component_requests_total{dynamo_component="backend",dynamo_endpoint="generate",worker_id="a"} 7
dynamo_component_requests_total{dynamo_component="backend",dynamo_endpoint="worker_kv_query",worker_id="a"} 3
dynamo_component_requests_total_bucket{dynamo_endpoint="generate"} 99
"""


def test_free_ports_are_distinct_bindable_and_below_the_signed_16_bit_limit():
    ports = free_ports(12)
    assert len(set(ports)) == 12
    assert all(1024 < p <= 32767 for p in ports)  # dynamo 1.4.2 parses DYN_SYSTEM_PORT as i16
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[0]))


def test_prometheus_sum_filters_by_metric_and_labels():
    assert prometheus_sum(METRICS, "dynamo_component_requests_total", dynamo_endpoint="generate") == 7
    assert prometheus_sum(METRICS, "dynamo_component_requests_total") == 10
    assert prometheus_sum("", "dynamo_component_requests_total") == 0


def test_readiness_counts_generate_instances_per_component():
    health = {
        "instances": [
            {"component": "backend", "endpoint": "generate"},
            {"component": "backend", "endpoint": "router-discovery"},
            {"component": "prefill", "endpoint": "generate"},
            {"component": "prefill", "endpoint": "generate"},
        ]
    }
    assert count_generate_instances(health) == {"backend": 1, "prefill": 2}
    assert count_generate_instances({}) == {}


def test_process_env_replaces_outer_dynamo_settings(tmp_path):
    env = process_env(
        {"PATH": "/bin", "DYN_NAMESPACE": "prod", "ETCD_ENDPOINTS": "x", "HOME": "/root"},
        tmp_path,
        {"DYN_SYSTEM_PORT": "2"},
    )
    assert "DYN_NAMESPACE" not in env and "ETCD_ENDPOINTS" not in env
    assert env["DYN_FILE_KV"] == str(tmp_path / "kv") and env["HOME"] == str(tmp_path / "home")
    assert env["DYN_TCP_RESPONSE_STREAM_HOST"] == "lo" and env["DYN_SYSTEM_PORT"] == "2"
    assert env["HF_HUB_OFFLINE"] == "1" and env["PATH"] == "/bin"


def test_degeneracy():
    assert degeneracy("") == "empty"
    assert degeneracy("the the the the the") == "the word 'the' repeated 5 times"
    assert degeneracy("abababababab") == "one short sequence repeated"
    assert degeneracy("selvesELIAGoodIOL matter certainile indeed") == ""
