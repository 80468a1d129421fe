"""What every firing loop needs: the api's clients, the parser pool, the settings."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from helios.settings import FiringSettings
from services.api.context import ApiContext
from services.api.parsing import ParserPool


@dataclass
class FiringContext:
    c: ApiContext
    parser: ParserPool
    settings: FiringSettings
    # Set by the HTTP handlers when a definition changes: the loop looks at once
    # instead of at its next tick (other replicas notice at theirs).
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def allowed_buckets(self) -> set[str]:
        return {self.c.settings.s3.bucket, *self.settings.buckets}
