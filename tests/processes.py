"""Ending the servers a test started (moto's S3 server, sshd): politely, then for sure."""

from __future__ import annotations

import subprocess


def end(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, and SIGKILL when ``process`` is still there after ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
