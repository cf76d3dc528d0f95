"""Functions for ``polyproc map`` examples and the demo's map job.

``parse_access_log`` turns one line of a web server's access log (the common log format)
into a record; ``sha256`` hashes a line. ``make_access_log`` writes a log to parse.
"""

from __future__ import annotations

import hashlib
import random
import re

__all__ = ["make_access_log", "parse_access_log", "sha256"]

_LINE = re.compile(
    r'(?P<host>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) [^"]*" '
    r"(?P<status>\d{3}) (?P<size>\d+|-)"
)


def parse_access_log(line: str) -> dict[str, object]:
    """One access-log line as ``{host, time, method, path, status, size}``.

    Raises:
        ValueError: the line is not in the common log format.
    """
    match = _LINE.match(line)
    if match is None:
        raise ValueError(f"not an access-log line: {line[:60]!r}")
    record: dict[str, object] = match.groupdict()
    record["status"] = int(match["status"])
    record["size"] = 0 if match["size"] == "-" else int(match["size"])
    return record


def sha256(line: str) -> str:
    """The SHA-256 of the line's UTF-8 bytes, in hex."""
    return hashlib.sha256(line.encode()).hexdigest()


def make_access_log(path: str, lines: int, *, broken_every: int = 0, seed: int = 7) -> None:
    """Write *lines* access-log lines to *path* (every *broken_every*-th one malformed)."""
    rng = random.Random(seed)
    paths = ["/", "/index.html", "/api/items", "/api/items/42", "/static/app.js", "/login"]
    with open(path, "w", encoding="utf-8") as out:
        for n in range(1, lines + 1):
            if broken_every and n % broken_every == 0:
                out.write("this line is not in the common log format\n")
                continue
            host = f"10.0.{rng.randrange(256)}.{rng.randrange(256)}"
            method = rng.choice(["GET", "GET", "GET", "POST"])
            status = rng.choice([200, 200, 200, 304, 404, 500])
            out.write(f'{host} - - [25/Nov/2026:19:{n // 60 % 60:02d}:{n % 60:02d} +0000] '
                      f'"{method} {rng.choice(paths)} HTTP/1.1" {status} {rng.randrange(50_000)}\n')
