"""Schedules and triggers: pure cron expansion and firing plans (no I/O here)."""
