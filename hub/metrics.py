"""Prometheus metrics, in one registry per process so tests can read them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

requests_total = Counter("imhub_http_requests_total", "HTTP API requests by route and errCode",
                         ["route", "err_code"], registry=REGISTRY)
hook_seconds = Histogram("imhub_hook_seconds", "Time a handler took for a hook",
                         ["hook", "handler", "outcome"], buckets=_LATENCY_BUCKETS,
                         registry=REGISTRY)
deliveries_total = Counter("imhub_deliveries_total", "Webhook delivery attempts by outcome",
                           ["outcome"], registry=REGISTRY)
delivery_seconds = Histogram("imhub_delivery_seconds", "Webhook delivery attempt latency",
                             buckets=_LATENCY_BUCKETS, registry=REGISTRY)
queue_depth = Gauge("imhub_delivery_queue_depth", "Pending delivery attempts per endpoint",
                    ["endpoint"], registry=REGISTRY)
oldest_pending_seconds = Gauge("imhub_delivery_oldest_pending_seconds",
                               "Age of the oldest pending delivery per endpoint", ["endpoint"],
                               registry=REGISTRY)
online_connections = Gauge("imhub_online_connections", "Open WebSocket connections on this node",
                           registry=REGISTRY)
commit_conflicts_total = Counter(
    "imhub_commit_conflicts_total",
    "Group-commit transactions PostgreSQL aborted for a deadlock or serialization failure "
    "(their writes run again)", registry=REGISTRY)
