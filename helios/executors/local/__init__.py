"""The local backend: each attempt is a sandboxed process on this machine."""
