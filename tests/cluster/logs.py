"""Container logs: a file per container that the kubelet appends to, read as the log API does.

Supports `follow` (stream until the container ends), `tailLines`, `sinceSeconds` and
`timestamps`. Restarts of a container (restartPolicy OnFailure) append to the same file;
`previous=true` is not supported.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path


class ContainerLog:
    """The log of one container: the file plus each line's wall-clock time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        self.times: list[float] = []  # one per complete line
        self.running = False  # the process writes to it
        self.finished = False  # the container terminated for good (no restart coming)
        self._changed = asyncio.Condition()

    async def pump(self, stream: asyncio.StreamReader) -> None:
        """Copy a process's output into the file, line by line, until it closes."""
        with self.path.open("ab") as out:
            while line := await stream.readline():
                out.write(line)
                out.flush()
                self.times.append(time.time())
                async with self._changed:
                    self._changed.notify_all()

    async def mark(self, *, running: bool, finished: bool = False) -> None:
        self.running, self.finished = running, finished
        async with self._changed:
            self._changed.notify_all()

    def _moved(self, sent: int) -> bool:
        return len(self.times) > sent or not self.running

    def _lines(self, start: int) -> list[bytes]:
        return self.path.read_bytes().splitlines(keepends=True)[start:]

    async def read(self, params: dict[str, str]) -> AsyncIterator[bytes]:
        lines = self._lines(0)
        first = 0
        if params.get("sinceSeconds"):
            cutoff = time.time() - float(params["sinceSeconds"])
            first = next((n for n, t in enumerate(self.times) if t >= cutoff), len(self.times))
        if params.get("tailLines"):
            first = max(first, len(lines) - int(params["tailLines"]))
        stamps = params.get("timestamps") == "true"
        sent = first
        for line in lines[first:]:
            yield self._render(line, sent, stamps)
            sent += 1
        while params.get("follow") == "true":
            async with self._changed:
                if len(self.times) <= sent and not self.running:
                    break
                await self._changed.wait_for(partial(self._moved, sent))
            for line in self._lines(sent):
                yield self._render(line, sent, stamps)
                sent += 1

    def _render(self, line: bytes, index: int, stamps: bool) -> bytes:
        if not stamps or index >= len(self.times):
            return line
        when = datetime.datetime.fromtimestamp(self.times[index], datetime.UTC)
        return when.strftime("%Y-%m-%dT%H:%M:%S.%f000Z ").encode() + line
