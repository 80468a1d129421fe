"""The api's firing loops: schedules, backfills, object triggers and chained runs.

They run inside the api process (started and stopped with it), under one lease so one
instance fires at a time; every run they start has a deterministic id, so an overlap, a
restart or a repeated pass never starts a run twice.
"""
