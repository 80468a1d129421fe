"""Errors of the artifact steps; each str() is a one-line reason fit for a task's status."""

from __future__ import annotations

from collections.abc import Iterable

# What user code calls the workspace, whatever folder backs it on this machine.
USER_ARTIFACTS_DIR = "/artifacts"


class ArtifactError(Exception):
    """Base of every error the downloader and uploader raise on purpose."""


class DigestMismatch(ArtifactError):
    def __init__(self, what: str, expected: tuple[str, int], actual: tuple[str, int]):
        self.what, self.expected, self.actual = what, expected, actual
        super().__init__(
            f"{what}: content does not match its recorded digest: expected sha256 "
            f"{expected[0]} ({expected[1]} bytes), got sha256 {actual[0]} ({actual[1]} bytes)"
        )


class ObjectMissing(ArtifactError):
    def __init__(self, name: str, bucket: str, key: str):
        self.name, self.bucket, self.key = name, bucket, key
        super().__init__(f"input {name}: object s3://{bucket}/{key} does not exist")


class MissingOutputs(ArtifactError):
    """Declared outputs that the task did not write (checked before any upload)."""

    def __init__(self, names: Iterable[str]):
        self.names = list(names)
        super().__init__(
            f"declared output(s) not found under {USER_ARTIFACTS_DIR}: {', '.join(self.names)}"
        )


class OutputChanged(ArtifactError):
    def __init__(self, name: str):
        self.name = name
        super().__init__(f"output {name} changed while it was being uploaded")
