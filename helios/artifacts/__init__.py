"""Artifacts: the node cache, the downloader and uploader, their log lines, memoization.

Modules (import them directly; this package re-exports nothing so that importing the
pure `memo` module costs nothing):

- `cache`: `NodeCache`, the content-addressed, bounded, node-local cache.
- `downloader`: `place_inputs`, fills a workspace from the cache or from S3.
- `uploader`: `upload_outputs`, uploads declared outputs with their sha256.
- `loglines`: the `[HELIOS] ...` line formats and `LogSummary`, their parser.
- `memo`: task fingerprints for memoization (pure, no I/O).
- `cli`: the logic behind `python -m helios.downloader` / `python -m helios.uploader`.
"""
