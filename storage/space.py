"""A little disk space held back in the data folder, so a full disk can still be cleaned up.

On a disk filled to the last byte SQLite cannot even open the database in WAL mode (its shared
memory file needs a few pages), so ``history`` and ``delete``, the commands that free space,
would fail too. The data folder therefore keeps ``space.reserve``, a file of RESERVE_BYTES
allocated while there is room. When a storage operation fails for lack of space, the command
line gives the reserve up and tries once more (``Database.retry_when_full``); it is made again
at the next start once there is room for it.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

RESERVE_BYTES = 1024 * 1024
NAME = "space.reserve"


class SpaceReserve:
    def __init__(self, path: Path, size: int = RESERVE_BYTES):
        self.path, self.size = path, size

    def exists(self) -> bool:
        return self.path.is_file()

    def ensure(self) -> bool:
        """Allocate the reserve when it is missing and the disk has room for it and as much again;
        True when it is in place. Never fails: it is a safety margin, not a need."""
        if self.exists():
            return True
        try:
            if shutil.disk_usage(self.path.parent).free < 2 * self.size:
                return False
            temp = self.path.with_name(f".{NAME}.tmp")
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, b"\0" * self.size)  # written, not sparse: a sparse file would hold nothing back
            finally:
                os.close(fd)
            os.replace(temp, self.path)
            return True
        except OSError:
            self.path.with_name(f".{NAME}.tmp").unlink(missing_ok=True)
            return False

    def release(self) -> bool:
        """Give the reserved space back to the disk; True when there was a reserve to give."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        log.warning("the disk under %s is full: released the %d KiB reserve to finish this command",
                    self.path.parent, self.size // 1024)
        return True


def space_reserve(data_dir: Path) -> SpaceReserve:
    return SpaceReserve(data_dir / NAME)
