"""Helios: a Kubernetes-native workflow orchestrator. Shared library for every service."""

__version__ = "0.1.0"
