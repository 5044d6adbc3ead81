"""The real Prometheus fixture scrapes an exporter a test starts and answers through its
HTTP API: the path every analysis test and the demo rely on."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from harness.kube import wait_for
from harness.net import free_port
from harness.prometheus import PrometheusServer


def test_prometheus_returns_a_value_scraped_from_a_test_exporter(
    prometheus: PrometheusServer,
) -> None:
    registry = CollectorRegistry()
    gauge = Gauge("ferryman_smoke_value", "a value set by the test", ["model"], registry=registry)
    gauge.labels(model="fraud").set(42.5)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        prometheus.add_target("smoke", f"127.0.0.1:{port}")
        result = wait_for(
            lambda: prometheus.query('ferryman_smoke_value{model="fraud",target="smoke"}'),
            timeout=30,
            interval=0.25,
            message="the scraped sample",
        )
        assert float(result[0]["value"][1]) == 42.5
        # A later change is seen at the next scrape.
        gauge.labels(model="fraud").set(7)
        wait_for(
            lambda: [
                r
                for r in prometheus.query('ferryman_smoke_value{model="fraud"}')
                if float(r["value"][1]) == 7
            ],
            timeout=15,
            interval=0.25,
            message="the updated sample",
        )
    finally:
        prometheus.remove_target("smoke")
        server.shutdown()
        thread.join(timeout=5)
