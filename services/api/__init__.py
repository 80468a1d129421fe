"""The HTTP API: submissions, run status, logs, cancel/retry, the SSE feed, OpenAPI."""
