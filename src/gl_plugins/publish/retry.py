"""Retrying transient network errors with exponential backoff inside a bounded total time."""

from __future__ import annotations

import time

TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)


def is_transient(e: BaseException) -> bool:
    """Connection trouble and 5xx answers are worth another try; refusals (4xx) are not."""
    import httpx
    import ollama

    if isinstance(e, (httpx.TransportError, ConnectionError)):
        return True
    if isinstance(e, ollama.ResponseError):
        return e.status_code in TRANSIENT_STATUS
    if isinstance(e, httpx.HTTPStatusError):
        return e.response.status_code in TRANSIENT_STATUS
    return False


def describe(e: BaseException) -> str:
    import ollama

    if isinstance(e, ollama.ResponseError):
        if e.status_code == -1:
            return f"the server reported: {e.error}"
        return f"the server answered {e.status_code}: {e.error}"
    text = str(e).strip()
    name = type(e).__name__
    if isinstance(e, ConnectionError) and "Failed to connect" in text:
        return "connection refused"
    return f"{name}: {text}" if text else name


def with_retry(fn, *, budget: float, what: str, echo=lambda m: None, transient=is_transient,
               first_delay: float = 0.5, max_delay: float = 8.0):
    """Call ``fn()`` until it succeeds, a non-transient error occurs, or ``budget`` seconds pass."""
    deadline = time.monotonic() + budget
    delay = first_delay
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - classified right below
            left = deadline - time.monotonic()
            if not transient(e) or left <= 0:
                raise
            wait = min(delay, left)
            echo(f"{what} failed ({describe(e)}); attempt {attempt + 1} in {wait:.1f} s")
            time.sleep(wait)
            delay = min(delay * 2, max_delay)
            attempt += 1
