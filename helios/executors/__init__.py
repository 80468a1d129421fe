"""Execution backends. The scheduler launches attempts through an `Executor`; the watcher
observes them through a `TaskSource`. Both backends report the same `TaskReport`s."""
