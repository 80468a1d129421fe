"""The metrics service: run/task events in, per-run metrics and a rolling window out.

Modules, from pure to I/O:
- `records`: which stored event wins (the order that makes redelivery harmless).
- `aggregate`: one run's metrics and per-task timings from its latest events.
- `summary`: the statistics over a window of runs.
- `keys`: the Redis keys only this service writes.
- `store`: the Redis adapter (atomic apply, conditional write, the window as a view).
- `deletions`: runs retention deleted leave the window (the `runs:deleted` stream).
- `prom`: Prometheus instruments of this service.
- `consumer`: JetStream batches -> store, with explicit acks.
- `api`: `GET /api/v1/dags/{dagName}/metrics`.
- `service`: `serve()`, the lifecycle.
"""
