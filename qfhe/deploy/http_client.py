"""The client side of ``qfhe serve``: upload keys, send encrypted inputs, receive encrypted outputs (httpx).

It only moves bytes: encryption and decryption stay in :class:`~qfhe.deploy.FHEModelClient`.

Examples
--------
>>> HTTPClient("http://127.0.0.1:8000").url
'http://127.0.0.1:8000'
"""

from __future__ import annotations

from pathlib import Path

from qfhe.errors import ServerError

OCTET = "application/octet-stream"


class HTTPClient:
    """Talk to a ``qfhe serve`` server.

    Parameters
    ----------
    url : str
        e.g. ``"http://127.0.0.1:8000"``.
    timeout : float
        Seconds to wait for a response (FHE requests can take minutes).

    Examples
    --------
    >>> HTTPClient("http://127.0.0.1:8000/", timeout=5).url
    'http://127.0.0.1:8000'
    """

    def __init__(self, url: str, timeout: float = 600.0):
        import httpx

        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        """Close the connection pool.

        Examples
        --------
        >>> HTTPClient("http://127.0.0.1:1").close()
        """
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check(self, response):
        if response.status_code >= 400:
            try:
                payload = response.json()
                msg = f"{payload.get('error', 'error')}: {payload.get('detail', '')}"
            except ValueError:
                msg = response.text[:300]
            raise ServerError(f"{self.url} answered {response.status_code}: {msg}", response.status_code)
        return response

    def health(self) -> dict:
        """``GET /health``.

        Examples
        --------
        >>> callable(HTTPClient.health)
        True
        """
        return self._check(self._http.get("/health")).json()

    def info(self) -> dict:
        """``GET /info``: scheme, fingerprint, shapes, versions, limits.

        Examples
        --------
        >>> callable(HTTPClient.info)
        True
        """
        return self._check(self._http.get("/info")).json()

    def download_client(self, directory) -> Path:
        """``GET /client.zip`` into ``directory`` (verify it with :class:`FHEModelClient`, which checks digests).

        Examples
        --------
        >>> callable(HTTPClient.download_client)
        True
        """
        path = Path(directory) / "client.zip"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self._check(self._http.get("/client.zip")).content)
        return path

    def upload_keys(self, evaluation_keys: bytes) -> str:
        """``POST /keys``; returns the ``key_id``.

        Raises
        ------
        ServerError
            With the server's status and message (e.g. 413 for keys over its limit).

        Examples
        --------
        >>> callable(HTTPClient.upload_keys)
        True
        """
        r = self._http.post("/keys", content=evaluation_keys, headers={"content-type": OCTET})
        return self._check(r).json()["key_id"]

    def predict(self, encrypted: bytes, key_id: str) -> bytes:
        """``POST /predict``: encrypted inputs in, encrypted outputs back.

        Raises
        ------
        ServerError
            404 for an unknown ``key_id`` (upload the keys again), 400 for malformed or truncated
            ciphertexts, 413 for a body over the server's limit.

        Examples
        --------
        >>> callable(HTTPClient.predict)
        True
        """
        r = self._http.post("/predict", params={"key_id": key_id}, content=encrypted, headers={"content-type": OCTET})
        return self._check(r).content
