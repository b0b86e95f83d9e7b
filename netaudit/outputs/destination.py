"""Where a command's output goes: checked before anything is sent, and written through, never over.

A regular file (or a new path) is replaced atomically: a temp file in the same folder, flushed and synced,
then renamed, with the old file's mode, so an interrupted run never leaves half a report over a good one.
A symlink is followed and its target is replaced the same way in the target's folder. Anything else (a
character or block device such as /dev/null, a FIFO, a socket, /dev/fd/N, /proc/self/fd/N, which is what
/dev/stdout is) is written in place and never renamed or unlinked: renaming over /dev/null as root turns
the machine's null device into a regular file.
"""

from __future__ import annotations

import io
import os
import re
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from typing import IO, Iterable, Iterator, TextIO

from netaudit.core.errors import OutputError, UsageError


@dataclass
class Output:
    path: str | None  # None or "-": standard output
    target: str = ""  # the file written: the path, or the end of its symlinks
    mode: int | None = None  # the replaced file's permission bits, kept
    _held: IO[bytes] | None = field(default=None, repr=False)  # written in place: a device, FIFO, descriptor

    @classmethod
    def open(cls, path: str | None) -> "Output":
        """Resolve and check the path now, before the first packet: exit 2 for a path that cannot be written."""
        if path in (None, "-"):
            return cls(None)
        descriptor = _descriptor(path)
        if descriptor is not None:  # /dev/stdout and the like: this process's own descriptor, written through
            try:
                return cls(path, path, None, os.fdopen(os.dup(descriptor), "wb", buffering=0))
            except OSError as exc:
                raise UsageError(f"cannot write {path}: {exc.strerror}") from None
        try:
            st = os.stat(path)  # follows symlinks: /dev/stdout is judged by what it points at
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror}") from None
        if st is not None and not stat.S_ISREG(st.st_mode):
            try:  # held open from now on: a FIFO's reader or a device is checked before any work
                held = open(path, "wb", buffering=0)  # noqa: SIM115 - kept for the final write
            except OSError as exc:
                raise UsageError(f"cannot write {path}: {exc.strerror}") from None
            return cls(path, path, None, held)
        target = os.path.realpath(path)  # a symlink's target, also a dangling one's
        folder = os.path.dirname(target) or "."
        try:
            fd, probe = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=folder)
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror} ({folder})") from None
        os.close(fd)
        os.unlink(probe)
        if st is not None and not os.access(target, os.W_OK):
            raise UsageError(f"cannot write {path}: Permission denied")
        return cls(path, target, stat.S_IMODE(st.st_mode) if st else None)

    def write(self, data: bytes | Iterable[bytes]) -> None:
        """The whole output, given at once or in pieces as a writer produces them (a report of thousands of
        endpoints is never one string): a replaced file appears only once the last piece is in."""
        pieces = _batches((data,) if isinstance(data, bytes) else data)
        try:
            if self.path is None:
                sys.stdout.flush()
                for piece in pieces:
                    sys.stdout.buffer.write(piece)
                sys.stdout.buffer.flush()  # out and checked now, not in the interpreter's teardown
            elif self._held is not None:
                for piece in pieces:
                    self._held.write(piece)
                self._held.close()
            else:
                self._replace(pieces)
        except OSError as exc:
            raise OutputError(f"cannot write {self.path or 'standard output'}: {exc.strerror}") from None

    def _replace(self, pieces: Iterable[bytes]) -> None:
        folder = os.path.dirname(self.target) or "."
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(self.target)}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                for piece in pieces:
                    fh.write(piece)
                fh.flush()
                os.fsync(fh.fileno())
                mode = self.mode if self.mode is not None else 0o666 & ~_umask()
                os.fchmod(fh.fileno(), mode)
            os.replace(tmp, self.target)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def stream(self) -> TextIO:
        """A text stream written in place as the work goes (scan --format jsonl): what an interrupted or
        killed scan wrote stays there. Opened only now, after every other check."""
        if self.path is None:
            return sys.stdout
        if self._held is not None:
            return io.TextIOWrapper(io.BufferedWriter(self._held), encoding="utf-8", errors="replace",
                                    write_through=True)
        try:
            return open(self.target, "w", encoding="utf-8", errors="replace")
        except OSError as exc:
            raise UsageError(f"cannot write {self.path}: {exc.strerror}") from None


# A descriptor of this process named as a path: /dev/fd/N, /proc/self/fd/N (what /dev/stdout links to).
FD_PATH = re.compile(r"/(?:dev/fd|proc/self/fd|proc/thread-self/fd)/(\d+)")
MAX_LINKS = 40  # the kernel's own limit on symlinks in one lookup


def _descriptor(path: str) -> int | None:
    """The open descriptor a path names, hop by hop through its symlinks. Its target may be a regular file
    (`netaudit … -o /dev/stdout >> log`): renaming over it would leave the shell writing to a deleted file
    and lose what came before, so it is written through the descriptor, at the shell's own offset."""
    current = os.path.abspath(path)
    for _ in range(MAX_LINKS):
        named = FD_PATH.fullmatch(current)
        if named:
            return int(named[1])
        if not os.path.islink(current):
            return None
        current = os.path.normpath(os.path.join(os.path.dirname(current), os.readlink(current)))
    return None


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


BATCH = 1 << 20  # bytes per write(): a device or FIFO held unbuffered gets few large writes, not many pieces


def _batches(pieces: Iterable[bytes]) -> Iterator[bytes]:
    batch = bytearray()
    for piece in pieces:
        batch += piece
        if len(batch) >= BATCH:
            yield bytes(batch)
            batch.clear()
    if batch:
        yield bytes(batch)


def write_text(text: str | Iterable[str], output: Output, encoding: str = "utf-8") -> None:
    """The text, whole or in pieces; `encoding` latin-1 writes back bytes that were read as latin-1 unchanged."""
    pieces = (text,) if isinstance(text, str) else text
    output.write(piece.encode(encoding, errors="replace") for piece in pieces)
