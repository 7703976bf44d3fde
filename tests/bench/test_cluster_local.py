"""``idard-bench run --cluster cluster-local.yaml`` end to end, through Ray's real launcher.

What a user runs to rehearse a cluster run on a workstation, on this machine: ``ray up``
over SSH to a head on 127.0.0.1 (Ray's on-premise ``local`` provider, Debian's ``sshd``,
`tests.sshserver`), the run submitted as a Ray Job through the dashboard forwarded by
``ray dashboard``, its log streamed back, records on an S3 API (moto's server,
`tests.s3server`) or a local ``--out`` synced back with rsync, then ``ray down``. Nothing
is replaced by a stand-in: the launcher, SSH, rsync, the Ray Jobs server and client, the
driver on the head and the object store are the real programs.

The test runs in private network and process namespaces (`tests.netns.isolated`): Ray's
head listens on every interface of its namespace, whose only one is loopback, and ``ray
down`` runs ``ray stop`` on the head, which ends every Ray process it can see: only the
test's own there. When the test ends, the kernel ends whatever it left.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from idard.measure.records import KEY_COLUMNS
from tests.bench.conftest import write_crops
from tests.netns import isolated
from tests.s3server import S3Server, s3_server
from tests.sshserver import SSHServer, ensure_ssh_tools, ssh_server

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RAY = str(BIN / "ray")
#: 2 crops x 2 downscalers x 2 seeds, one fast model (sleeps, then upsamples) and PSNR.
RECORDS = 8

pytestmark = pytest.mark.slow


def _bashrc(s3: S3Server) -> str:
    """What cluster-local.yaml asks a user to put at the top of ~/.bashrc: this environment's
    programs and this checkout's idard, and the object store's variables."""
    exports = {"PATH": f"{BIN}:$PATH", "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0", **s3.env()}
    return "".join(f'export {key}="{value}"\n' for key, value in exports.items())


def _cluster_file(folder: Path, name: str, sshd: SSHServer, ray_temp: Path) -> Path:
    """The shipped cluster-local.yaml with its placeholders filled in, as a user fills them,
    and the head's Ray kept apart from any other on this machine: its own temp dir, and one
    logical GPU so the run takes the GPU path of a real cluster (torch computes on the CPU)."""
    config = yaml.safe_load((REPO / "cluster-local.yaml").read_text())
    config["cluster_name"] = name  # the launcher keeps its state per name, in /tmp
    config["auth"] = {"ssh_user": sshd.user, "ssh_private_key": str(sshd.client_key)}
    config["head_start_ray_commands"] = [
        command.replace("ray start --head", f"ray start --head --temp-dir={ray_temp} --num-cpus=2 --num-gpus=1")
        for command in config["head_start_ray_commands"]]
    path = folder / "cluster-local.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _suite(folder: Path, images: str) -> Path:
    path = folder / "suite.yaml"
    path.write_text(f"name: rehearsal\nimages: ['{images}']\ndownscalers: [bicubic, nearest]\n"
                    "models: ['latency(ms=50)']\nmetrics: [psnr]\nsamples: 2\n")
    return path


def _cli(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "idard.bench.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def _exactly_once(records: pl.DataFrame) -> None:
    keys = records.select(KEY_COLUMNS)
    assert keys.height == RECORDS, f"{keys.height} records, expected {RECORDS}"
    assert keys.unique().height == RECORDS, "a key is held twice"
    assert records["error"].null_count() == RECORDS, records["error"].drop_nulls().to_list()


def _live(name: str) -> list[int]:
    """Live (not zombie) processes of this namespace whose program is ``name``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and Path(command).name == name:
            found.append(int(entry.name))
    return found


def _forget(cluster_name: str, ray_temp: Path) -> None:
    """Remove what the launcher keeps on this machine for a cluster: its state and lock in
    /tmp/ray, its config cache, its SSH control sockets; and the head's Ray temp dir."""
    shutil.rmtree(ray_temp, ignore_errors=True)
    for leftover in Path("/tmp/ray").glob(f"cluster-{cluster_name}.*"):
        leftover.unlink(missing_ok=True)
    for cache in Path("/tmp").glob("ray-config-*"):
        with contextlib.suppress(OSError, ValueError):
            if json.loads(cache.read_text())["config"]["cluster_name"] == cluster_name:
                cache.unlink()
    control = hashlib.sha256(cluster_name.encode()).hexdigest()[:10]  # Ray's SSH ControlPath
    for folder in Path("/tmp").glob(f"ray_ssh_*/{control}"):
        shutil.rmtree(folder, ignore_errors=True)


def test_a_cluster_run_goes_through_rays_launcher_to_s3_and_to_a_local_out_then_ray_down(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    ensure_ssh_tools()  # before the namespace: installing needs the package mirror
    if not isolated(request, own_pids=True):
        return
    ray_temp = Path(tempfile.mkdtemp(prefix="idrc", dir="/tmp"))  # short: Ray's socket paths
    name = f"idard-test-{ray_temp.name}"
    started = time.monotonic()
    with s3_server(tmp_path / "moto.log") as s3, ssh_server(tmp_path / "sshd", tmp_path / "home") as sshd:
        config = _cluster_file(tmp_path, name, sshd, ray_temp)
        try:
            s3.make_bucket("bench")
            write_crops(tmp_path / "hr", 2)
            s3.upload(tmp_path / "hr", "s3://bench/hr/")
            (sshd.home / ".bashrc").write_text(_bashrc(s3))
            # A user who ran idard here before has the token Ray's local ray.init() made, in the
            # home the launcher and the head share: the head's `ray start` then requires it.
            (sshd.home / ".ray").mkdir()
            (sshd.home / ".ray" / "auth_token").write_text(secrets.token_hex(32))
            # A head where an earlier Ray left its address (this test's /tmp/ray is its own):
            # the launcher's check must ask the Ray that runs, not that address.
            Path("/tmp/ray/ray_current_cluster").write_text("127.0.0.1:1")
            suite = _suite(tmp_path, "s3://bench/hr/")
            env = {**os.environ, **s3.env(), "PYTHONPATH": str(REPO), "HOME": str(sshd.home)}

            to_s3 = _cli("run", "--cluster", str(config), "--suite", str(suite), "--out", "s3://bench/runs/x",
                         "--bootstrap", "100", "--flush-records", "2", env=env)
            print(f"--cluster to S3 ({time.monotonic() - started:.0f} s):\n{to_s3.stdout[-4000:]}")
            assert to_s3.returncode == 0, to_s3.stdout[-6000:] + to_s3.stderr[-3000:]
            os.environ.update(s3.env())  # read the store as the CLI does
            from idard.bench.store import RecordStore

            _exactly_once(RecordStore("s3://bench/runs/x").scan().collect())
            # The job's own log reached this console: the driver's lines, from the head.
            assert "8 tasks to compute (0 of 8 already in the store)" in to_s3.stdout
            assert "records and tables: s3://bench/runs/x" in to_s3.stdout
            assert "tables: s3://bench/runs/x/ida_rd.md" in to_s3.stdout  # URIs a user can paste, not bucket/key
            assert "--flush-records=2" in to_s3.stdout, "the driver on the head got the run's options"

            local = tmp_path / "runs" / "local"
            to_disk = _cli("run", "--cluster", str(config), "--suite", str(suite), "--out", str(local),
                           "--bootstrap", "100", env=env)
            print(f"--cluster to a local --out ({time.monotonic() - started:.0f} s):\n{to_disk.stdout[-2000:]}")
            assert to_disk.returncode == 0, to_disk.stdout[-6000:] + to_disk.stderr[-3000:]
            _exactly_once(RecordStore(local).scan().collect())
            assert (local / "run.json").is_file() and (local / "ida_rd.md").is_file()
            assert (sshd.home / "idard-runs" / "local" / "records").is_dir(), "the head wrote under its ~"
            assert _live("raylet"), "Ray runs on the head until `ray down`"
        finally:
            down = subprocess.run([RAY, "down", "-y", str(config)], capture_output=True, text=True, timeout=120)
            print(f"ray down: exit {down.returncode} ({time.monotonic() - started:.0f} s)")
            _forget(name, ray_temp)
        assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-3000:]
        assert not _live("raylet") and not _live("gcs_server"), "`ray down` left Ray running on the head"
