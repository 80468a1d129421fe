"""The embedded stack: NATS, Valkey and SeaweedFS from their PyPI wheels, on loopback."""
