"""Download the Paris Open Data export: streamed, resumable, renamed into place once complete."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import httpx

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int | None], None]

SYNTH_HINT = "run `bikecount data synth` to generate realistic data offline instead"

_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


class FetchError(Exception):
    """A download that failed; the message says what went wrong and how to fix it.

    ``status`` is the HTTP status when the server answered one, None when it was not reached.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def partial_path(dest: Path) -> Path:
    """Where an unfinished download of ``dest`` is kept: ``raw.csv`` -> ``raw.csv.part``."""
    return dest.with_suffix(dest.suffix + ".part")


def download_export(
    url: str,
    dest: Path,
    *,
    on_progress: ProgressCallback | None = None,
    timeout: float = 30.0,
    chunk_size: int = 1 << 20,
) -> Path:
    """Download ``url`` to ``dest``, resuming an earlier partial download if there is one.

    Bytes go to ``<dest>.part`` first and the file is renamed to ``dest`` only once complete, so
    ``dest`` is never a truncated file. An existing ``.part`` is resumed with a ``Range`` request;
    a server that ignores the range (answers 200) makes the download start over.

    Args:
        url: the export's address, usually ``Settings().open_data_url``.
        dest: the file to create (its folder is created if needed).
        on_progress: called as ``on_progress(bytes_so_far, total_bytes_or_None)`` after each chunk.
        timeout: seconds to wait to connect and between two chunks.
        chunk_size: bytes read at a time.

    Returns:
        ``dest``.

    Raises:
        FetchError: the server could not be reached, answered an HTTP error, or the transfer broke.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = partial_path(dest)
    offset = part.stat().st_size if part.exists() else 0
    try:
        with httpx.Client(timeout=timeout, follow_redirects=True) as client:
            complete = _stream_to(client, url, part, offset, on_progress, chunk_size)
            if not complete:
                # The saved part could not be resumed: start from scratch, once.
                part.unlink(missing_ok=True)
                _stream_to(client, url, part, 0, on_progress, chunk_size)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise describe_transport_error(url, exc, part) from exc
    part.replace(dest)  # atomic on one filesystem: readers see no file or the whole file
    logger.info("downloaded %s to %s (%d bytes)", url, dest, dest.stat().st_size)
    return dest


def _stream_to(
    client: httpx.Client,
    url: str,
    part: Path,
    offset: int,
    on_progress: ProgressCallback | None,
    chunk_size: int,
) -> bool:
    """Stream ``url`` into ``part`` from ``offset``; False when the part cannot be resumed."""
    # Byte ranges only mean something on the bytes as stored, so ask for no content encoding.
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        logger.info("resuming %s at byte %d", url, offset)
    with client.stream("GET", url, headers=headers) as response:
        if offset and response.status_code == 416:
            return _already_complete(response, offset)
        _raise_for_status(response, url)
        if offset and response.status_code == 206:
            if _range_start(response) != offset:
                return False  # a range other than the one asked for: not safe to append
            mode, done = "ab", offset
        else:
            if offset:
                logger.info("%s ignored the range request; downloading from the start", url)
            mode, done = "wb", 0
        total = _total_size(response, done)
        _report(on_progress, done, total)
        with part.open(mode) as out:
            for chunk in response.iter_bytes(chunk_size):
                out.write(chunk)
                done += len(chunk)
                _report(on_progress, done, total)
    if total is not None and done < total:
        raise FetchError(
            f"the download of {url} stopped at {done} of {total} bytes; "
            "run the same command again to resume it"
        )
    return True


def _already_complete(response: httpx.Response, offset: int) -> bool:
    """A 416 on resume means the part is already whole when its size is the file's size."""
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    return bool(match and match.group(3) != "*" and int(match.group(3)) == offset)


def _range_start(response: httpx.Response) -> int | None:
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    return int(match.group(1)) if match and match.group(1) else None


def _total_size(response: httpx.Response, already: int) -> int | None:
    """The size of the whole file, if the headers say it (None for unknown or encoded bodies)."""
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if response.status_code == 206 and match and match.group(3) != "*":
        return int(match.group(3))
    encoded = response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
    length = response.headers.get("Content-Length")
    if encoded or not (length and length.isdigit()):
        return None
    return already + int(length)


def _raise_for_status(response: httpx.Response, url: str) -> None:
    if response.status_code < 400:
        return
    reason = response.reason_phrase or "error"
    hint = (
        "check the URL (or leave --url out to use the default export)"
        if response.status_code < 500
        else "the server has a problem; try again later, or " + SYNTH_HINT
    )
    raise FetchError(
        f"HTTP {response.status_code} {reason} from {url}; {hint}", status=response.status_code
    )


def describe_transport_error(url: str, exc: Exception, part: Path | None = None) -> FetchError:
    """Turn httpx's network errors into one message a user can act on."""
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return FetchError(f"{url!r} is not an http(s) URL ({exc}); give a full https://... URL")
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.ProxyError):
        return FetchError(
            f"could not reach {url} ({exc or type(exc).__name__}): the machine may be offline, "
            f"or the host unknown or refusing connections; check the network, or {SYNTH_HINT}"
        )
    if part is None:
        return FetchError(f"reading {url} failed ({exc or type(exc).__name__}); try again later")
    saved = part.stat().st_size if part.exists() else 0
    return FetchError(
        f"the download of {url} failed after {saved} bytes ({exc or type(exc).__name__}); "
        "run the same command again to resume it"
    )


def _report(on_progress: ProgressCallback | None, done: int, total: int | None) -> None:
    if on_progress is not None:
        on_progress(done, total)
