"""A forEach task's `result`, as a condition reads it: its instances' results in index
order (null where one wrote none), at most MAX_MAPPED_RESULTS_BYTES.

A view does not always hold them (a scheduler restarted, a view re-read): reading them
on every report of a large map would cost a round trip per instance each time, so the
decision asks for them (NeedResults) only when a condition is about to read them, and
the engine decides again on a view loaded with them (`RunStore.load(results_of=...)`).
"""

from __future__ import annotations

from typing import Any

import orjson

from helios.dag.conditions import ConditionError
from services.scheduler.expand import instance_name
from services.scheduler.runview import RunView, TaskView


class NeedResults(Exception):
    """A condition reads the result of forEach tasks whose instances' results this view
    does not hold: load the run again with them (`RunStore.load(results_of=...)`)."""

    def __init__(self, tasks: frozenset[str]):
        super().__init__(f"instance results of {sorted(tasks)} not loaded")
        self.tasks = tasks


# A forEach task's `result` is its instances' results as one list; past this size (as
# JSON) a condition may not read it: it fails, saying so.
MAX_MAPPED_RESULTS_BYTES = 4 * 1024 * 1024


def _instances(view: RunView, name: str) -> list[TaskView]:
    return [view.tasks[instance_name(name, i)] for i in range(len(view.items[name]))]


def need_results(view: RunView, names: frozenset[str]) -> None:
    """Raise NeedResults naming every forEach task among `names` whose instances' results
    the view does not hold (all at once: one reload serves them all)."""
    missing = frozenset(n for n in names if n in view.items
                        and not all(tv.result_known for tv in _instances(view, n)))
    if not missing:
        return
    if missing <= view.results_read:  # read back already: cannot happen, never loop
        raise ConditionError(f"the results of {sorted(missing)[0]!r}'s instances are not available")
    raise NeedResults(missing)


def mapped_result(view: RunView, name: str) -> list[Any]:
    """The results of forEach task `name`'s instances, in index order (null where one
    wrote none). Raises NeedResults when they are not all in the view."""
    need_results(view, frozenset({name}))
    results = [tv.result for tv in _instances(view, name)]
    size = sum(len(orjson.dumps(r)) for r in results)
    if size > MAX_MAPPED_RESULTS_BYTES:
        raise ConditionError(f"the results of {name!r}'s {len(results)} instances hold {size}"
                             f" bytes, more than a condition may read ({MAX_MAPPED_RESULTS_BYTES})")
    return results
