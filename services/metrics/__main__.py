"""`python -m services.metrics`: the metrics service."""

from helios import runtime
from services.metrics.service import serve

if __name__ == "__main__":
    runtime.run("metrics", serve)
