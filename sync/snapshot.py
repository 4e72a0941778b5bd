"""Snapshot client, PROTOCOL §5.3: ``GET {central_url}/v1/stores/{store}/snapshot``."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pydantic

from sync.errors import SnapshotError, WireFormatError
from sync.messages import Snapshot
from sync.wire import check_value, loads

log = logging.getLogger(__name__)

MAX_SNAPSHOT_BYTES = 512 * 1024 * 1024


class SnapshotClient:
    """Fetches and validates one store's snapshot. TLS verification is always on (the
    system store, or ``ca_file``); the bearer token is never logged."""

    def __init__(
        self,
        central_url: str,
        token: str | None,
        store: str,
        *,
        ca_file: Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.url = f"{central_url.rstrip('/')}/v1/stores/{store}/snapshot"
        self.store = store
        self._token = token
        verify: ssl.SSLContext | bool = True
        if ca_file is not None:
            verify = ssl.create_default_context(cafile=str(ca_file))
        self._verify = verify
        self._timeout = timeout

    async def fetch(self) -> Snapshot:
        # httpx is imported on the first fetch (a resync), not at start (~50 ms, ~4 MiB)
        import httpx  # noqa: PLC0415

        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            timeout = httpx.Timeout(self._timeout, connect=min(self._timeout, 10.0))
            async with httpx.AsyncClient(verify=self._verify, timeout=timeout) as client:
                response = await client.get(self.url, headers=headers)
        except httpx.HTTPError as exc:
            raise SnapshotError(f"snapshot fetch from {self.url} failed: {exc!r}",
                                url=self.url) from exc
        if response.status_code != 200:
            raise SnapshotError(f"snapshot fetch from {self.url}: HTTP {response.status_code}",
                                url=self.url, status_code=response.status_code)
        if len(response.content) > MAX_SNAPSHOT_BYTES:
            raise SnapshotError("snapshot too large", url=self.url)
        try:
            obj = loads(response.content)
            check_value(obj)
            snapshot = Snapshot.model_validate(obj)
        except (WireFormatError, pydantic.ValidationError) as exc:
            raise SnapshotError(f"snapshot from {self.url} is malformed: {exc}",
                                url=self.url) from exc
        if snapshot.store != self.store:
            raise SnapshotError(f"snapshot is for store {snapshot.store!r}, not {self.store!r}")
        return snapshot
