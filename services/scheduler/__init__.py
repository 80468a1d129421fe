"""The scheduler: evaluates runs, dispatches ready tasks, finalises runs."""
