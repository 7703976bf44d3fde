"""A real S3 API on 127.0.0.1 for the object-store tests: moto's server in its own process.

idard is pointed at it the way a user points it at MinIO, R2 or Ceph: the standard AWS
variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``) plus
the endpoint override ``AWS_ENDPOINT_URL``, which pyarrow's S3 filesystem (idard's
store, sources and weights) and boto3 both read. Nothing here stands in for idard's code:
the bytes go over HTTP to a server that speaks the S3 protocol.

The server checks signatures (moto's IAM mode, ``INITIAL_NO_AUTH_ACTION_COUNT``): the
first requests create an IAM user with an access key allowed everything, and from then on
a request signed with another key or secret is refused, as a real store refuses it.

`Outage` is the fault injection for "the server goes down mid-run": a TCP relay on
127.0.0.1 in front of the server that can refuse connections and cut the open ones while
the server (and what it stored) stays up, so a test can look at what was flushed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from tests.processes import end

REGION = "us-east-1"
#: Requests the server takes unsigned before it checks every signature: creating the
#: user, its policy and its access key (see `S3Server._make_user`).
_SETUP_REQUESTS = 3


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _moto_server() -> list[str]:
    """moto's server entry point in this interpreter's environment."""
    beside = Path(sys.executable).with_name("moto_server")
    return [str(beside)] if beside.exists() else [shutil.which("moto_server") or "moto_server"]


class S3Server:
    """moto's S3 server on 127.0.0.1, checking signatures; `stop` ends it."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(_SETUP_REQUESTS)}
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([*_moto_server(), "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self._wait_up()
        self.key_id, self.secret = self._make_user()

    def _wait_up(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"moto_server did not listen on {self.endpoint} within {timeout:.0f} s")

    def _make_user(self) -> tuple[str, str]:
        """An IAM user allowed everything, and its access key (the only valid one)."""
        import boto3

        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name=REGION,
                           aws_access_key_id="setup", aws_secret_access_key="setup")
        iam.create_user(UserName="idard")
        iam.put_user_policy(UserName="idard", PolicyName="all", PolicyDocument=(
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}'))
        key = iam.create_access_key(UserName="idard")["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        """What a user exports to use this server (the README's MinIO example, here)."""
        return {
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": endpoint or self.endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",  # never ask 169.254.169.254 for credentials
        }

    def client(self):
        """A boto3 S3 client of this server (to set up buckets and look at objects)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=self.key_id, aws_secret_access_key=self.secret)

    def make_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def upload(self, folder: Path, uri: str) -> list[str]:
        """Upload the files of ``folder`` (recursively) under ``s3://bucket/prefix/``."""
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        client = self.client()
        keys = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            key = f"{prefix.rstrip('/')}/{path.relative_to(folder).as_posix()}".lstrip("/")
            client.upload_file(str(path), bucket, key)
            keys.append(key)
        return keys

    def keys(self, uri: str) -> list[str]:
        """Every object key under ``s3://bucket/prefix``."""
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def stop(self) -> None:
        end(self.process)
        self._log.close()


@contextlib.contextmanager
def s3_server(log: Path) -> Iterator[S3Server]:
    server = S3Server(log)
    try:
        yield server
    finally:
        server.stop()


class Outage:
    """A TCP relay on 127.0.0.1 to ``target_port`` whose `down` refuses new connections
    and resets the open ones (the store's host went away), and `up` serves again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Close the listener (new connections are refused) and reset every open one."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._sockets.discard(source)
                self._sockets.discard(sink)


def wait_for(predicate, timeout: float, what: str, every: float = 0.2) -> None:
    """Poll ``predicate`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


__all__ = ["Outage", "S3Server", "free_port", "s3_server", "wait_for"]
