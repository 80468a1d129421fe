"""Tests of the Kubernetes backend against a stand-in API server with a simulated kubelet."""
