"""An ordered, bounded buffer of line-protocol chunks: memory first, spilling to files."""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class Chunk:
    """Lines to send in one request, with the number of readings they carry."""

    seq: int
    rows: int
    text: str | None
    path: Path | None = None

    def load(self) -> str:
        """Return the chunk's text, reading it from its file if it was spilled."""
        if self.text is None:
            assert self.path is not None
            return self.path.read_text(encoding="utf-8")
        return self.text


class Spool:
    """Chunks waiting to be sent, oldest first.

    The oldest chunks live in files under `folder` (one file per chunk, named by sequence
    number and row count), the newest in memory: when memory holds more than
    `memory_rows`, its oldest chunks move to files, which keeps the whole in order. Past
    `max_rows` in total the oldest chunks are dropped and counted. Files left by an earlier
    run are picked up first, so a stop while the server was down loses nothing.
    """

    def __init__(self, folder: Path, memory_rows: int, max_rows: int) -> None:
        self.folder = folder
        self.memory_rows = memory_rows
        self.max_rows = max_rows
        self._disk: deque[Chunk] = deque()
        self._memory: deque[Chunk] = deque()
        self._disk_rows = 0
        self._memory_rows = 0
        #: Readings dropped because the bound was exceeded.
        self.dropped_rows = 0
        #: Readings written to spill files (each reading counted once per spill).
        self.spilled_rows = 0
        #: Readings found in spill files of an earlier run.
        self.recovered_rows = 0
        #: Chunks being sent now: never dropped, so no reading is counted both written
        #: and dropped (the sender adds and discards them).
        self.in_flight: set[Chunk] = set()
        folder.mkdir(parents=True, exist_ok=True)
        self._next_seq = 0
        for path in sorted(folder.glob("*.lp")):
            seq_text, rows_text = path.stem.split("-")
            chunk = Chunk(seq=int(seq_text), rows=int(rows_text), text=None, path=path)
            self._disk.append(chunk)
            self._disk_rows += chunk.rows
            self._next_seq = chunk.seq + 1
        self.recovered_rows = self._disk_rows
        for stale in folder.glob("*.tmp"):
            stale.unlink()

    @property
    def rows(self) -> int:
        """Readings waiting, in memory and in files."""
        return self._disk_rows + self._memory_rows

    @property
    def disk_rows(self) -> int:
        """Readings waiting in spill files."""
        return self._disk_rows

    def __len__(self) -> int:
        return len(self._disk) + len(self._memory)

    def push(self, text: str, rows: int) -> None:
        """Append a chunk after every other one, then enforce the bounds."""
        self._memory.append(Chunk(seq=self._next_seq, rows=rows, text=text))
        self._next_seq += 1
        self._memory_rows += rows
        while self._memory_rows > self.memory_rows and len(self._memory) > 1:
            self._spill(self._memory.popleft())
        self._drop_oldest()

    def _spill(self, chunk: Chunk) -> None:
        self._memory_rows -= chunk.rows
        path = self.folder / f"{chunk.seq:012d}-{chunk.rows}.lp"
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as file:
            file.write(chunk.load())
            file.flush()
            # On disk before the rename: a power cut must not leave an empty chunk file
            # under the final name.
            os.fsync(file.fileno())
        # Renamed only when complete, so a crash never leaves half a chunk to replay.
        os.replace(tmp, path)
        # And the rename itself on disk, so the chunk outlives a power cut.
        folder_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(folder_fd)
        finally:
            os.close(folder_fd)
        chunk.text, chunk.path = None, path
        self._disk.append(chunk)
        self._disk_rows += chunk.rows
        self.spilled_rows += chunk.rows

    def _drop_oldest(self) -> None:
        dropped = 0
        newest = self._memory[-1] if self._memory else None
        while self.rows > self.max_rows:
            chunk = self.oldest_except(self.in_flight)
            # The chunk just pushed stays; a chunk being sent may yet be written.
            if chunk is None or chunk is newest:
                break
            self.remove(chunk)
            dropped += chunk.rows
        if dropped:
            self.dropped_rows += dropped
            log.error(
                "InfluxDB buffer over its bound of %d readings: dropped the oldest %d "
                "(%d dropped so far)",
                self.max_rows,
                dropped,
                self.dropped_rows,
            )

    def head(self) -> Chunk | None:
        """Return the oldest chunk, or None when nothing waits."""
        if self._disk:
            return self._disk[0]
        return self._memory[0] if self._memory else None

    def oldest_except(self, busy: Collection[Chunk]) -> Chunk | None:
        """Return the oldest chunk not in `busy` (the ones being sent), or None."""
        for queue in (self._disk, self._memory):
            for chunk in queue:
                if chunk not in busy:
                    return chunk
        return None

    def remove(self, chunk: Chunk) -> None:
        """Remove a chunk once sent (no-op if it was dropped meanwhile)."""
        # Sent chunks are at or near the head, so these scans stop early.
        if chunk in self._disk:
            self._disk.remove(chunk)
            self._disk_rows -= chunk.rows
            if chunk.path is not None:
                chunk.path.unlink(missing_ok=True)
        elif chunk in self._memory:
            self._memory.remove(chunk)
            self._memory_rows -= chunk.rows

    def persist(self) -> int:
        """Move every chunk still in memory to files; return how many readings moved."""
        moved = self._memory_rows
        while self._memory:
            self._spill(self._memory.popleft())
        return moved
