"""The two ways to send line protocol: InfluxDB's v1 /write and the v2 write API."""

from __future__ import annotations

import base64
import json
from typing import Any, Protocol

import aiohttp

from meterguard.errors import StoreUnavailableError
from meterguard.stores.config import InfluxSettings


class TransientWriteError(Exception):
    """The server is down, slow or refusing for now: keep the chunk and retry."""


class RejectedWriteError(Exception):
    """The server refused the data itself (malformed, type conflict): retrying cannot help."""


class Writer(Protocol):
    """Sends one chunk of line protocol; raises TransientWriteError or RejectedWriteError."""

    async def send(self, text: str) -> None: ...

    async def close(self) -> None: ...


def _classify(status: int, body: str) -> Exception:
    message = f"HTTP {status}: {body.strip()[:300]}"
    # 400: bad line or field type conflict; 413: request too large. Everything else
    # (auth, missing database, 5xx, 429) may be fixed on the server side: keep the data.
    if status in (400, 413, 422):
        return RejectedWriteError(message)
    return TransientWriteError(message)


class V1Writer:
    """POSTs to /write?db=..&rp=..&precision=.. (InfluxDB 1.x, and 2.x/3.x v1 compatibility)."""

    def __init__(self, settings: InfluxSettings) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None
        params = {"db": settings.database, "precision": settings.precision}
        if settings.retention_policy:
            params["rp"] = settings.retention_policy
        self.params = params

    def session(self) -> aiohttp.ClientSession:
        """Return the HTTP session, opened on first use inside the running loop."""
        if self._session is None or self._session.closed:
            headers = {}
            if self._settings.username:
                # A Basic auth header, not u=/p= in the URL, where proxies and logs see it.
                pair = f"{self._settings.username}:{self._settings.password}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
            elif self._settings.token:
                # InfluxDB 2.x/3.x v1-compatibility endpoints take the v2 token this way.
                headers["Authorization"] = f"Token {self._settings.token}"
            self._session = aiohttp.ClientSession(
                base_url=self._settings.url.rstrip("/") + "/",
                timeout=aiohttp.ClientTimeout(total=self._settings.timeout_s),
                headers=headers,
            )
        return self._session

    async def send(self, text: str) -> None:
        """Write one chunk."""
        try:
            async with self.session().post(
                "write", params=self.params, data=text.encode("utf-8")
            ) as response:
                if response.status == 204:
                    return
                body = await response.text()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransientWriteError(f"{type(exc).__name__}: {exc}") from exc
        raise _classify(response.status, body)

    async def query(self, influxql: str, database: str) -> dict[str, Any]:
        """Run InfluxQL through /query with epoch-millisecond times; return the JSON.

        Raises StoreUnavailableError when the server cannot be reached or its answer is
        not a JSON object.
        """
        params = {"db": database, "q": influxql, "epoch": "ms"}
        try:
            async with self.session().post("query", data=params) as response:
                body = await response.text()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise StoreUnavailableError("InfluxDB", f"{type(exc).__name__}: {exc}") from exc
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise StoreUnavailableError(
                "InfluxDB", f"HTTP {status}, not JSON: {body.strip()[:200]!r}"
            ) from exc
        if not isinstance(data, dict):
            raise StoreUnavailableError("InfluxDB", f"HTTP {status}, unexpected answer")
        if status >= 400 and "error" not in data:
            data["error"] = f"HTTP {status}"
        return data

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()


class V2Writer:
    """Writes through influxdb-client's async write API (InfluxDB 1.8+, 2.x, 3.x).

    The async API raises on every failed request; the client's batching write API is not
    used because it only logs a failed batch and drops it.
    """

    def __init__(self, settings: InfluxSettings) -> None:
        self._settings = settings
        self._client: Any = None
        self._write_api: Any = None

    def _api(self) -> Any:
        if self._write_api is None:
            from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

            self._client = InfluxDBClientAsync(
                url=self._settings.url,
                token=self._settings.token,
                org=self._settings.org,
                timeout=int(self._settings.timeout_s * 1000),
            )
            self._write_api = self._client.write_api()
        return self._write_api

    async def send(self, text: str) -> None:
        """Write one chunk."""
        from influxdb_client.rest import ApiException

        try:
            await self._api().write(
                bucket=self._settings.bucket,
                org=self._settings.org,
                record=text,
                write_precision=self._settings.precision,
            )
        except ApiException as exc:
            raise _classify(int(exc.status or 0), str(exc.body or exc.reason)) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransientWriteError(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        """Close the client."""
        if self._client is not None:
            await self._client.close()
