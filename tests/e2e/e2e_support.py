"""What the e2e tests share: the running `tokenry dev` of conftest.py's ``dev_run``."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class DevRun:
    """A running `tokenry dev` in a fresh clone."""

    clone: Path  # the worktree; `tokenry dev` runs here, its data in ./.tokenry
    home: Path  # HOME of every process
    log: Path  # the supervisor's stdout and stderr: the banner
    process: subprocess.Popen[bytes]
    #: the fixture held 127.0.0.1:8080 while the stack started: the gateway must be elsewhere
    held_8080: bool

    def env(self, **extra: str) -> dict[str, str]:
        """What a new user's shell has: PATH and HOME, nothing else."""
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.home), **extra}

    def banner(self) -> str:
        return self.log.read_text()
