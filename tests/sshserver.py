"""An SSH server on 127.0.0.1 for the cluster-launcher tests: Debian's ``sshd`` in its own process.

Ray's launcher reaches every node over SSH, the head too, even when the head is this
machine (the on-premise ``local`` provider of ``cluster-local.yaml``). The test's ``sshd``
is that node's door: it listens on loopback only, knows one throwaway host key and one
throwaway client key (both made with ``ssh-keygen`` in the test's folder), and gives every
session a home of the test's own (``SetEnv HOME=...``), whose ``~/.bashrc`` is what the
comments of ``cluster-local.yaml`` ask a user to write (the environment's ``bin`` on PATH,
the object store's variables). Ray runs each remote command in ``bash --login -c -i
'source ~/.bashrc; ...'``, so that file is all the head knows about this checkout.

Port 22: the tests run it inside a private network namespace (`tests.netns.isolated`),
where nothing else listens, so the launcher's ordinary SSH port needs no proxy command.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.processes import end

SSHD = "/usr/sbin/sshd"
#: Debian packages the launcher needs on both ends: the SSH server, and rsync (Ray copies
#: its bootstrap files and a local run directory with it).
PACKAGES = ("openssh-server", "rsync")


def missing_tools() -> list[str]:
    """The Debian packages of `PACKAGES` whose program is absent here."""
    present = {"openssh-server": Path(SSHD).exists(), "rsync": shutil.which("rsync") is not None}
    return [name for name in PACKAGES if not present[name]]


def ensure_ssh_tools() -> None:
    """Install `PACKAGES` from Debian when absent (root with apt-get, as in CI; ``make test``
    does the same first); otherwise skip the calling test, saying what to install."""
    missing = missing_tools()
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"needs {' '.join(missing)} (apt-get install {' '.join(missing)}); not root or no apt-get here")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.skip(f"could not install {' '.join(missing)}: {done.stderr.strip()[-300:]}")


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "idard-test", "-f", str(path)],
                   check=True, capture_output=True)
    return path


class SSHServer:
    """``sshd -D`` on 127.0.0.1:22 for ``user``, accepting only `client_key`; `stop` ends it."""

    def __init__(self, folder: Path, home: Path, env: Mapping[str, str] | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        home.mkdir(parents=True, exist_ok=True)
        self.user = os.environ.get("USER") or __import__("getpass").getuser()
        self.home = home
        self.client_key = _keygen(folder / "client_key")
        (folder / "authorized_keys").write_text(Path(f"{self.client_key}.pub").read_text())
        settings = {
            "ListenAddress": "127.0.0.1", "Port": "22", "HostKey": str(_keygen(folder / "host_key")),
            "AuthorizedKeysFile": str(folder / "authorized_keys"), "PasswordAuthentication": "no",
            "KbdInteractiveAuthentication": "no", "PermitRootLogin": "prohibit-password", "UsePAM": "no",
            # The test's folders sit under the world-writable /tmp, which StrictModes refuses.
            "StrictModes": "no", "PidFile": str(folder / "sshd.pid"),
        }
        lines = [f"{key} {value}" for key, value in settings.items()]
        lines += [f"SetEnv {key}={value}" for key, value in {"HOME": str(home), **(env or {})}.items()]
        config = folder / "sshd_config"
        config.write_text("\n".join(lines) + "\n")
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation directory
        self._log = folder / "sshd.log"
        self.process = subprocess.Popen([SSHD, "-D", "-f", str(config), "-E", str(self._log)])
        self._wait_up()

    def _wait_up(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.process.returncode}: {self.log()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 22), timeout=0.5):
                return
            time.sleep(0.1)
        raise RuntimeError(f"sshd did not listen on 127.0.0.1:22 within {timeout:.0f} s: {self.log()}")

    def log(self) -> str:
        return self._log.read_text(errors="replace")[-2000:] if self._log.exists() else ""

    def stop(self) -> None:
        end(self.process)


@contextlib.contextmanager
def ssh_server(folder: Path, home: Path, env: Mapping[str, str] | None = None) -> Iterator[SSHServer]:
    server = SSHServer(folder, home, env)
    try:
        yield server
    finally:
        server.stop()


__all__ = ["PACKAGES", "SSHServer", "ensure_ssh_tools", "missing_tools", "ssh_server"]
