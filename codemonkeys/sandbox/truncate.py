"""Cut command output in the middle: the start and the end of a run are what matter.

A test run that prints megabytes must not fill a model's context or the
host's memory, so output is kept as a head and a tail while it streams in
(:class:`HeadTail`) and rendered with a marker that says how much was cut.
Pure code, no I/O.
"""

from __future__ import annotations

MARKER = "\n[... {cut} bytes cut ...]\n"


def _split(limit: int) -> tuple[int, int]:
    head = limit // 2
    return head, limit - head


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def truncate_middle(data: bytes, limit: int) -> tuple[str, bool]:
    """``data`` decoded, with its middle replaced by a marker past ``limit`` bytes.

    Returns the text and whether anything was cut. The head and the tail are
    decoded separately, so a multi-byte character split by the cut shows up as
    a replacement character instead of an error.
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if len(data) <= limit:
        return _decode(data), False
    head, tail = _split(limit)
    cut = len(data) - limit
    tail_bytes = data[len(data) - tail :] if tail else b""
    return _decode(data[:head]) + MARKER.format(cut=cut) + _decode(tail_bytes), True


class HeadTail:
    """Keeps the first and last bytes of a stream, at most ``limit`` in all.

    ``render()`` equals ``truncate_middle`` of everything fed, without holding
    everything in memory.
    """

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self.limit = limit
        self._head_size, self._tail_size = _split(limit)
        self._all = bytearray()  # everything, while the total fits in the limit
        self._overflowed = False
        self._head = b""
        self._tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        """Add the next piece of output."""
        self.total += len(chunk)
        if not self._overflowed:
            self._all += chunk
            if self.total <= self.limit:
                return
            self._overflowed = True
            self._head = bytes(self._all[: self._head_size])
            self._tail = self._all[self._head_size :]
            self._all = bytearray()
        else:
            self._tail += chunk
        if len(self._tail) > self._tail_size:
            del self._tail[: len(self._tail) - self._tail_size]

    def render(self) -> tuple[str, bool]:
        """The kept output as text, and whether anything was cut."""
        if self.total <= self.limit:
            return _decode(bytes(self._all)), False
        cut = self.total - self.limit
        return _decode(self._head) + MARKER.format(cut=cut) + _decode(bytes(self._tail)), True
