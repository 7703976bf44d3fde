"""``idard-bench run --cluster cluster.yaml``: Ray's cluster launcher, then a Ray Job.

What a user would otherwise type by hand, in order:

1. **Check before paying.** The launcher YAML is validated with Ray's own validator (the
   one ``ray up`` runs) and refused while a ``<your-...>`` placeholder is left, naming
   every such key; the suite is refused when it names files only this machine has.
2. **``ray up -y --no-restart --no-config-cache cluster.yaml``.** Idempotent: it creates
   the cluster, or only updates an existing one without restarting Ray, so a job already
   running there is not killed (``ray exec ... "ray status"`` then checks that Ray runs
   on the head: a newly pulled image replaces its container, which needs a start).
3. **Submit the driver as a Ray Job** through the head's dashboard, forwarded here with
   ``ray dashboard cluster.yaml`` (an SSH port-forward, kept open while the job runs).
   The job's working directory holds only the suite file; its entry point is
   ``idard-bench run --suite <file> --address auto --out <dir>``. The driver then runs on
   the head, next to the workers and the object store, and survives this machine going
   to sleep. Its log is streamed here until it ends.
4. **Records end up where ``--out`` says.** An object-store URI (``s3://``, ``gs://``) is
   passed through: the head writes it directly with its instance role. A local directory
   is mirrored through ``~/idard-runs/<name>`` on the head (the SSH user's home): uploaded first with
   ``ray rsync-up`` when it already holds records (so the run resumes instead of
   recomputing keys that would then exist twice), downloaded afterwards with
   ``ray rsync-down``, also after a failed job, so nothing computed is lost.

GPU workers start at zero nodes. A driver that started before any GPU node joined would
see a CPU-only cluster and run the SR model on the head's CPUs, so the job first runs
``python -m idard.bench.run.cluster await-gpus``: it asks the autoscaler for a GPU and waits
for it, and the run then requests one actor per GPU of the cluster's capacity, for which
the autoscaler adds the remaining nodes.

Every blocking external command goes through a `CommandRunner` and the job submission
through a `JobSubmitter`, so the whole sequence can be inspected, and tested without a
cloud account.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.util
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from idard.measure.registry import SpecError, parse_spec

#: Where the driver writes a run on the head node when ``--out`` is a local directory: in
#: the home of the launcher's SSH user (``/home/ray`` in the Docker image; yours on-premise),
#: expanded by the head's shells (the job's, and rsync's over SSH, as for Ray's own ``~/`` files).
REMOTE_RUNS = "~/idard-runs"
#: The dashboard port on the head (Ray's default), reached through the SSH forward.
DASHBOARD_REMOTE_PORT = 8265
#: How long a job waits for its first GPU node: an instance boot plus a pull of the
#: ~10 GB image take minutes; far longer means no capacity or no quota for the type.
GPU_WAIT_S = 1800
#: How long ``ray dashboard`` may take to have the SSH forward answering.
TUNNEL_WAIT_S = 120.0

#: ``ray status`` under the head's own authentication rule. ``ray start`` turns token
#: authentication on by itself when ``RAY_AUTH_MODE`` is unset and a token exists
#: (``~/.ray/auth_token``, made by any earlier local ``ray.init()``; ``$RAY_AUTH_TOKEN[_PATH]``),
#: but ``ray status`` does not (Ray 2.60), and fails on such a head as if Ray were not running.
#: ``--address auto``: without it ``ray status`` asks the address in /tmp/ray/ray_current_cluster
#: first, which a Ray started earlier on that machine (or one started with ``--temp-dir``
#: elsewhere) leaves stale; "auto" asks the one Ray that runs there, and the stale file
#: only when none runs (`ray._private.services.get_ray_address_from_environment`).
RAY_STATUS_ON_HEAD = ('if [ -z "$RAY_AUTH_MODE" ] && { [ -n "$RAY_AUTH_TOKEN" ] || '
                      '[ -s "${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}" ]; }; then export RAY_AUTH_MODE=token; '
                      'fi; ray status --address auto')

_TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
_PLACEHOLDER = re.compile(r"<[A-Za-z][\w.-]*>")  # <your-registry>, not a shell's `<in >out`
_IMAGE_SOURCES_ON_NODES = ("bundled:",)


class ClusterConfigError(ValueError):
    """A cluster file that ``ray up`` would reject or launch wrongly; names file and key."""


class ClusterToolsMissing(ValueError):
    """This machine lacks what Ray's launcher or job client needs; says what to install."""


class ClusterError(RuntimeError):
    """Something failed on the way to, or on, the cluster (not a mistake in the input)."""


CommandRunner = Callable[[Sequence[str]], None]
"""Runs one external command to completion; raises `subprocess.CalledProcessError` on failure."""


@dataclasses.dataclass(frozen=True)
class ClusterJob:
    """Everything a `JobSubmitter` needs to run the driver on the head node."""

    config_path: Path  # the launcher YAML, for `ray dashboard`
    entrypoint: str  # shell command run on the head
    working_dir: Path  # uploaded as the job's working directory (holds the suite file)
    out: str  # where the driver writes, as the head sees it


JobSubmitter = Callable[[ClusterJob, Console], str]
"""Runs a `ClusterJob`, streams its log to the console, returns its final status
(``SUCCEEDED``, ``FAILED`` or ``STOPPED``)."""


# --------------------------------------------------------------------------- the config
def find_placeholders(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """``(key path, value)`` of every string still holding a ``<...>`` placeholder."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from find_placeholders(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from find_placeholders(value, f"{path}[{i}]")
    elif isinstance(node, str) and _PLACEHOLDER.search(node):
        yield path, node


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Silence a library logger's INFO chatter for the duration (errors still show)."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _validation_message(exc: Exception) -> str:
    """Ray raises jsonschema errors (with a key path) and plain ValueErrors (without)."""
    message = getattr(exc, "message", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    where = ".".join(str(p) for p in getattr(exc, "absolute_path", None) or ())
    return f"key {where!r}: {message}" if where else message


def load_cluster_config(path: str | Path, *, allow_placeholders: bool = False) -> dict[str, Any]:
    """Read a launcher YAML and check it exactly as ``ray up`` would, before anything starts.

    Returns the file's mapping as written (not Ray's prepared form). Raises
    `ClusterConfigError` naming the file, and the key where there is one, when the file
    is missing, is not YAML, fails Ray's schema, or still holds a ``<your-...>``
    placeholder (``allow_placeholders`` skips only that check: the committed template).
    """
    from ray.autoscaler._private.util import prepare_config, validate_config

    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.suite.safe_yaml import read_yaml_file

    path = Path(path)
    config = read_yaml_file(path, "cluster file", ClusterConfigError)  # idard's one bounded YAML loader
    if not isinstance(config, dict):
        raise ClusterConfigError(f"{path}: a cluster file must be a mapping, got {type(config).__name__}")
    if not allow_placeholders:
        left = list(find_placeholders(config))
        if left:
            keys = "; ".join(f"key {key!r} holds {value!r}" for key, value in left)
            raise ClusterConfigError(f"{path}: fill in your account's values first (see the comments "
                                     f"in the file): {keys}")
    if not isinstance(config.get("provider"), dict) or "type" not in config["provider"]:
        raise ClusterConfigError(f"{path}: key 'provider': a mapping with a 'type' (e.g. aws) is required")
    try:
        with _quiet("ray.autoscaler._private.util"):
            validate_config(prepare_config(dict(config)))
    except Exception as exc:  # noqa: BLE001 - jsonschema, ValueError, NotImplementedError, ...
        raise ClusterConfigError(f"{path}: {_validation_message(exc)}") from None
    return config


def gpu_capacity(config: dict[str, Any]) -> int | None:
    """GPUs the cluster can grow to, from the worker types' declared ``resources``.

    ``None`` when a worker type leaves its GPUs to Ray's detection (unknown here), and
    for an on-premise cluster (``provider: {type: local}``), which has no node types:
    Ray detects each listed machine's GPUs. Respects both the per-type and the global
    ``max_workers``, filling the largest GPU nodes first.
    """
    if "available_node_types" not in config:
        return None
    head = config.get("head_node_type")
    global_max = int(config.get("max_workers", 2))
    per_type = []
    for name, node_type in config.get("available_node_types", {}).items():
        if name == head:
            continue
        gpus = node_type.get("resources", {}).get("GPU")
        if gpus is None:
            return None
        per_type.append((int(gpus), int(node_type.get("max_workers", global_max))))
    total, nodes_left = 0, global_max
    for gpus, count in sorted(per_type, reverse=True):
        take = min(count, nodes_left)
        total, nodes_left = total + gpus * take, nodes_left - take
    return total


def adds_nodes_on_demand(config: dict[str, Any]) -> bool:
    """Whether worker nodes join only when asked for (cloud node types, from zero).

    Then a driver that started at once would see a cluster without GPUs, so the job
    first waits for one. An on-premise cluster (no node types: ``ray up`` starts the
    listed machines, the head with the GPUs it has) has nothing to wait for: a head
    without GPUs would wait the whole `GPU_WAIT_S` for nothing.
    """
    head = config.get("head_node_type")
    return any(name != head for name in config.get("available_node_types", {}))


# ---------------------------------------------------------------------------- the suite
def _is_uri(location: str) -> bool:
    from idard.bench.store.records import is_uri  # imported late: the store pulls in torch

    return is_uri(location)


def _spec_params(spec: Any) -> dict[str, Any]:
    if isinstance(spec, dict):
        return {k: v for k, v in spec.items() if k != "name"}
    if isinstance(spec, str):
        try:
            return parse_spec(spec.strip())[1]
        except SpecError:
            return {}  # load_suite on the head reports it, with its own message
    return {}


def _is_local_relative(value: str) -> bool:
    return "://" not in value and not value.startswith(_IMAGE_SOURCES_ON_NODES) \
        and not Path(value).expanduser().is_absolute()


def check_suite_portable(suite_path: str | Path) -> None:
    """Refuse a suite that names files only this machine has, before a cluster starts.

    Only the suite file travels with the job, so relative paths (resolved beside the
    suite) cannot exist on the head. Object-store URIs, ``bundled:`` sets and absolute
    paths (inside the Docker image) are accepted. Raises `SuiteError` naming the key.
    """
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.suite.definition import SuiteError, read_suite_file

    path = Path(suite_path)
    data = read_suite_file(path)
    if not isinstance(data, dict):
        return  # load_suite reports the shape of a broken suite
    advice = ("only the suite file reaches the cluster: use an object-store URI (s3://...), "
              "a bundled: set, or an absolute path inside the Docker image")
    images = data.get("images", [])
    for i, source in enumerate(images if isinstance(images, list) else [images]):
        if isinstance(source, str) and _is_local_relative(source):
            raise SuiteError(f"{path}: key 'images[{i}]': {source!r} is a path on this machine; {advice}")
    weights_advice = ("only the suite file reaches the cluster: name weights by bare file name (found in "
                      "each node's weights cache: `idard-bench weights fetch NAME` or baked into the image), "
                      "an object-store URI (s3://...), a URL, or an absolute path inside the Docker image")
    for key in ("downscalers", "models"):
        specs = data.get(key, [])
        for i, spec in enumerate(specs if isinstance(specs, list) else [specs]):
            for name, value in _local_files(spec):
                raise SuiteError(f"{path}: key '{key}[{i}]': {name}={value!r} is a path on this machine; "
                                 + (weights_advice if name in _WEIGHT_PARAMS else advice))


#: Parameters that name weight files. A bare file name is portable: every node resolves it
#: in its own weights cache (idard.measure.weights), where `weights fetch` or the image put it.
_WEIGHT_PARAMS = ("weights", "mapping", "synthesis", "gaussian_fit")


def _local_files(spec: Any) -> Iterator[tuple[str, str]]:
    """(parameter, value) of each file parameter of ``spec`` that only this machine can
    have, looking into the stage specs of a ``chain(models=(...))`` too."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.suite.definition import _PATH_PARAMS

    for name, value in _spec_params(spec).items():
        if isinstance(value, (list, tuple)):
            for inner in value:
                if isinstance(inner, str) and "(" in inner:
                    yield from _local_files(inner)
            continue
        if not isinstance(value, str) or not _is_local_relative(value):
            continue
        if name in _WEIGHT_PARAMS and "/" not in value and "\\" not in value:
            continue  # a bare name: resolved from each node's weights cache
        if name in _PATH_PARAMS or name in _WEIGHT_PARAMS:
            yield name, value


# ------------------------------------------------------------------- local prerequisites
def check_local_tools(config: dict[str, Any], *, launcher: bool, jobs: bool) -> None:
    """Say what to install when Ray's launcher or job client cannot work on this machine.

    idard's own install pins the plain ``ray`` package. ``ray up`` on AWS also needs
    ``boto3``, and the Ray Jobs client needs ``ray[default]`` (aiohttp); both are only
    needed on the machine that drives a cluster, so they are not idard dependencies.
    """
    from importlib.metadata import version

    missing = []
    if launcher and config.get("provider", {}).get("type") == "aws" and importlib.util.find_spec("boto3") is None:
        missing.append("boto3")
    if jobs and importlib.util.find_spec("aiohttp") is None:
        missing.append(f"ray[default]=={version('ray')}")
    if missing:
        raise ClusterToolsMissing("`idard-bench run --cluster` needs Ray's cluster tools on this machine: "
                                  f"pip install {' '.join(shlex.quote(m) for m in missing)}")


def _executable(name: str) -> str:
    """The environment's own ``ray`` (beside this Python), else the one on PATH.

    ``idard-bench`` is often run from a virtual environment that is not activated, so
    PATH may hold no ``ray`` or another version's.
    """
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ClusterToolsMissing(f"the {name!r} command is not installed here (pip install 'ray[default]')")
    return found


class SubprocessRunner:
    """The default `CommandRunner`: echo the command, run it, fail on a non-zero exit.

    Output is not captured: ``ray up`` reports its progress and its errors itself.
    """

    def __init__(self, console: Console) -> None:
        self.console = console

    def __call__(self, argv: Sequence[str]) -> None:
        self.console.print(f"[dim]$ {escape(shlex.join(argv))}[/]", highlight=False)
        subprocess.run([_executable(argv[0]), *argv[1:]], check=True)


# ------------------------------------------------------------------ launcher commands
def cluster_up(config_path: str | Path, runner: CommandRunner, console: Console | None = None) -> None:
    """Create the cluster, or update a running one without killing the jobs on it.

    ``ray up --no-restart`` leaves Ray running on an existing head (a new head still gets
    it started); ``--no-config-cache`` re-resolves cloud resources instead of trusting a
    cache from an earlier launch. One case needs a start after all: when ``ray up``
    pulled a newer image, it replaced the head's container, and ``--no-restart`` then
    leaves the new container without Ray. ``ray status`` on the head tells, and
    ``--restart-only`` starts Ray there (there is no job to lose in a new container).
    """
    runner(["ray", "up", "-y", "--no-restart", "--no-config-cache", str(config_path)])
    try:
        runner(["ray", "exec", str(config_path), RAY_STATUS_ON_HEAD])
    except subprocess.CalledProcessError:
        if console is not None:
            console.print("Ray is not running on the head (a new image replaced its container): starting it",
                          highlight=False)
        runner(["ray", "up", "-y", "--restart-only", str(config_path)])


def sync_up(config_path: str | Path, local_dir: Path, remote_dir: str, runner: CommandRunner) -> None:
    """Copy a local run directory's contents to the head (trailing slashes: contents)."""
    runner(["ray", "rsync-up", str(config_path), f"{local_dir}/", f"{remote_dir}/"])


def sync_down(config_path: str | Path, remote_dir: str, local_dir: Path, runner: CommandRunner) -> None:
    """Copy the head's run directory into the local one; local files are never deleted."""
    local_dir.mkdir(parents=True, exist_ok=True)
    runner(["ray", "rsync-down", str(config_path), f"{remote_dir}/", f"{local_dir}/"])


def remote_run_dir(out: str) -> str:
    """Where the driver writes: ``out`` itself for an object store, else a head directory."""
    if _is_uri(out):
        return out
    name = Path(out.removeprefix("file://")).resolve().name
    if not name:
        raise ValueError(f"--out {out!r}: a local run directory needs a name (it names the head's copy)")
    return f"{REMOTE_RUNS}/{name}"


def _has_records(local_dir: Path) -> bool:
    return any((local_dir / "records").glob("part-*.parquet"))


# --------------------------------------------------------------------------- the job
def _shell_path(path: str) -> str:
    """``path`` quoted for the job's shell, a leading ``~/`` left to it: the head's home."""
    return f"~/{shlex.quote(path[2:])}" if path.startswith("~/") else shlex.quote(path)


def job_entrypoint(suite_name: str, remote_out: str, extra_args: Sequence[str], *,
                   workers: int | None, use_gpus: bool, await_gpus: bool = True,
                   gpu_wait_s: int = GPU_WAIT_S) -> str:
    """The shell command the job runs on the head: wait for a GPU node (``await_gpus``,
    with ``use_gpus``), then the driver."""
    options = [f"--workers={workers}"] if workers is not None else []
    if not use_gpus:
        options.append("--no-gpu")
    command = " ".join([shlex.join(["idard-bench", "run", "--suite", suite_name, "--address", "auto", "--out"]),
                        _shell_path(remote_out), *map(shlex.quote, [*options, *extra_args])])
    if not (use_gpus and await_gpus):
        return command
    wait = ["python", "-m", "idard.bench.run.cluster", "await-gpus", "1", f"--timeout={gpu_wait_s}"]
    return f"{shlex.join(wait)} && {command}"


@contextlib.contextmanager
def job_working_dir(suite_path: str | Path) -> Iterator[Path]:
    """A temporary directory holding only the suite file: the job's working directory.

    Ray uploads the whole working directory with the job, so it must not be the
    project checkout (records, virtual environments, caches).
    """
    with tempfile.TemporaryDirectory(prefix="idard-job-") as tmp:
        shutil.copy2(suite_path, Path(tmp) / Path(suite_path).name)
        yield Path(tmp)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    """Whether the dashboard answers through the forward: any HTTP status counts (a head
    with token authentication answers 401 to a request without the token)."""
    try:
        with urllib.request.urlopen(f"{url}/api/version", timeout=3) as response:  # noqa: S310 - localhost
            return response.status == 200
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        if os.name == "posix":
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)
    except ProcessLookupError:
        pass


def _stop(process: subprocess.Popen) -> None:
    """End the forward and its ssh child: both are in the session started for them."""
    if process.poll() is not None:
        return
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL if os.name == "posix" else signal.SIGTERM)
        process.wait()


@contextlib.contextmanager
def dashboard_tunnel(config_path: str | Path, console: Console, *, timeout_s: float = TUNNEL_WAIT_S) -> Iterator[str]:
    """Forward the head's dashboard to a free local port with ``ray dashboard``.

    The forward is an SSH process that stays in the foreground; it is started in its own
    session so that ending it also ends its ssh child, and it is ended when the block
    exits, whatever happens inside. Yields the local dashboard URL once it answers.
    """
    port = _free_port()
    argv = ["ray", "dashboard", "--port", str(port), "--remote-port", str(DASHBOARD_REMOTE_PORT), str(config_path)]
    console.print(f"[dim]$ {escape(shlex.join(argv))} &[/]", highlight=False)
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen([_executable("ray"), *argv[1:]], stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            deadline = time.monotonic() + timeout_s
            while not _answers(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = "\n".join(log.read().strip().splitlines()[-5:])
                    raise ClusterError(f"`ray dashboard {config_path}` did not forward the dashboard"
                                       + (f":\n{tail}" if tail else ""))
                time.sleep(1.0)
            yield url
        finally:
            _stop(process)


class RayJobSubmitter:
    """The default `JobSubmitter`: Ray Jobs through the head's dashboard.

    ``dashboard`` is an address the job client can reach (e.g. ``http://head:8265``);
    without one, `dashboard_tunnel` forwards it for the duration of the job.
    ``client_factory`` builds the client from the address (a fake one in tests).
    """

    def __init__(self, dashboard: str | None = None, *,
                 client_factory: Callable[[str], Any] | None = None, poll_s: float = 5.0) -> None:
        self.dashboard = dashboard
        self.client_factory = client_factory or _job_client
        self.poll_s = poll_s

    def __call__(self, job: ClusterJob, console: Console) -> str:
        tunnel = (contextlib.nullcontext(self.dashboard) if self.dashboard
                  else dashboard_tunnel(job.config_path, console))
        with tunnel as address:
            client = self.client_factory(address)
            self._refuse_second_writer(client, job.out)
            job_id = client.submit_job(entrypoint=job.entrypoint, runtime_env={"working_dir": str(job.working_dir)},
                                       metadata={"idard_out": job.out})
            console.print(f"Ray Job {job_id} on the head: {escape(job.entrypoint)}", highlight=False)
            try:
                return self._follow(client, job_id, console)
            except KeyboardInterrupt:
                console.print(f"\nstopped following; the job {job_id} goes on on the cluster. With "
                              f"`ray dashboard {job.config_path}` running in another terminal: "
                              f"`ray job logs --address http://127.0.0.1:8265 --follow {job_id}` to watch "
                              f"it, `ray job stop --address http://127.0.0.1:8265 {job_id}` to stop it.",
                              highlight=False)
                raise

    @staticmethod
    def _refuse_second_writer(client: Any, out: str) -> None:
        """A run directory has one writer at a time: never start a second driver on it."""
        for details in client.list_jobs():
            status = _status_name(details.status)
            if status not in _TERMINAL and (details.metadata or {}).get("idard_out") == out:
                job = details.submission_id or details.job_id
                raise ClusterError(f"Ray Job {job} is still writing {out} ({status}); a run directory has one "
                                   f"writer at a time: wait for it to end, or stop it (`ray job stop {job}` "
                                   "with the dashboard forwarded by `ray dashboard`), then run again")

    def _follow(self, client: Any, job_id: str, console: Console) -> str:
        """Stream the log until the job ends; if the stream breaks, poll the status."""

        async def tail() -> None:
            async for chunk in client.tail_job_logs(job_id):
                console.out(chunk, end="", highlight=False)

        try:
            asyncio.run(tail())
        except Exception as exc:  # noqa: BLE001 - websocket/aiohttp errors: the job goes on regardless
            console.print(f"(log stream ended early: {exc}; waiting for the job to finish)", highlight=False)
        while (status := _status_name(client.get_job_status(job_id))) not in _TERMINAL:
            time.sleep(self.poll_s)
        return status


def _job_client(address: str) -> Any:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address, headers=_auth_headers())


def _auth_headers() -> dict[str, str]:
    """This user's Ray token as a bearer header, as ``ray.init`` presents it to a cluster.

    A head whose ``ray start`` found a token (the same ``~/.ray/auth_token`` when the head
    is this machine, as with cluster-local.yaml; ``$RAY_AUTH_TOKEN`` for a remote one)
    answers the Jobs API only with it; the Jobs client sends it only in token mode, which
    a plain process is not in. A head without token authentication ignores the header.
    """
    from ray._raylet import AuthenticationTokenLoader

    loader = AuthenticationTokenLoader.instance()
    if not loader.has_token(ignore_auth_mode=True):
        return {}
    return {"Authorization": f"Bearer {loader.get_raw_token(ignore_auth_mode=True)}"}


def _status_name(status: Any) -> str:
    """``JobStatus.SUCCEEDED`` and ``"SUCCEEDED"`` alike -> ``"SUCCEEDED"``."""
    return str(getattr(status, "value", status))


# ------------------------------------------------------------------ waiting for GPUs
def wait_for_gpus(count: int, timeout_s: float, *, gpus_now: Callable[[], float],
                  request: Callable[[int], None], log: Callable[[str], None] = print,
                  sleep: Callable[[float], None] = time.sleep,
                  clock: Callable[[], float] = time.monotonic, report_every_s: float = 60.0) -> None:
    """Ask the autoscaler for ``count`` GPUs and return once the cluster has them.

    The request is withdrawn before returning, also on timeout: it is persistent in
    Ray, and a forgotten one would keep GPU nodes from ever scaling down. Once the run's
    actors hold the GPUs, they keep the nodes busy by themselves.
    """
    have = gpus_now()
    if have >= count:
        return
    request(count)
    try:
        start = last_report = clock()
        log(f"waiting for {count} GPU(s); the autoscaler is adding worker nodes (have {have:g})")
        while (have := gpus_now()) < count:
            if clock() - start > timeout_s:
                raise ClusterError(f"no GPU node joined within {timeout_s:.0f} s (have {have:g} of {count}): "
                                   "check the autoscaler (`ray monitor cluster.yaml`), the instance "
                                   "type's capacity and your quota in the region")
            if clock() - last_report >= report_every_s:
                log(f"still waiting for GPUs ({clock() - start:.0f} s, have {have:g} of {count})")
                last_report = clock()
            sleep(5.0)
        log(f"{have:g} GPU(s) ready after {clock() - start:.0f} s")
    finally:
        request(0)


def _await_gpus_on_cluster(count: int, timeout_s: float) -> None:
    """`wait_for_gpus` against the Ray cluster this process runs in (a job on the head)."""
    import ray
    from ray.autoscaler.sdk import request_resources

    ray.init(address="auto", logging_level=logging.WARNING, log_to_driver=False)
    try:
        wait_for_gpus(count, timeout_s, gpus_now=lambda: ray.cluster_resources().get("GPU", 0.0),
                      request=lambda n: request_resources(bundles=[{"GPU": 1}] * n),
                      log=lambda line: print(line, flush=True))
    finally:
        ray.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m idard.bench.run.cluster await-gpus N``: the first step of a cluster job."""
    parser = argparse.ArgumentParser(prog="python -m idard.bench.run.cluster")
    commands = parser.add_subparsers(dest="command", required=True)
    await_gpus = commands.add_parser("await-gpus", help="scale up to N GPUs and wait for them")
    await_gpus.add_argument("count", type=int)
    await_gpus.add_argument("--timeout", type=float, default=GPU_WAIT_S, help="seconds")
    args = parser.parse_args(argv)
    try:
        _await_gpus_on_cluster(args.count, args.timeout)
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


# ------------------------------------------------------------------------ the sequence
def run_on_cluster(
    config_path: str | Path,
    suite_path: str | Path,
    out: str,
    extra_args: Sequence[str] = (),
    *,
    workers: int | None = None,
    use_gpus: bool = True,
    dashboard: str | None = None,
    runner: CommandRunner | None = None,
    submit: JobSubmitter | None = None,
    console: Console | None = None,
) -> int:
    """Bring the cluster up, run the suite there as a Ray Job, leave the records at ``out``.

    ``extra_args`` are passed to the driver's ``idard-bench run`` as they are.
    ``workers`` defaults to the GPU capacity of the cluster file (one model actor per
    GPU it can grow to; when a worker type leaves its GPUs to Ray's detection, the GPUs
    present when the driver starts); ``use_gpus=False`` runs CPU actors and waits for no
    GPU.
    ``dashboard`` is a job-API address to use instead of forwarding one with ``ray
    dashboard``. ``runner`` and ``submit`` replace the external commands and the Ray
    Jobs submission (tests). Returns the exit code: 0 when the job succeeded and the
    records are at ``out``, 1 when something failed on the way or on the cluster.
    Input mistakes (cluster file, suite, missing tools) raise `ValueError` subclasses
    before anything starts.
    """
    console = console or Console()
    config_path = Path(config_path)
    config = load_cluster_config(config_path)
    check_suite_portable(suite_path)
    tunnel = submit is None and dashboard is None  # `ray dashboard` bootstraps like `ray up`
    check_local_tools(config, launcher=runner is None or tunnel, jobs=submit is None)
    if workers is None and use_gpus:
        workers = gpu_capacity(config)
        if workers == 0:
            raise ClusterConfigError(f"{config_path}: no worker node type declares a GPU "
                                     "(resources: {GPU: n}); add one, or run with --no-gpu")
    remote_out = remote_run_dir(out)
    local_out = None if _is_uri(out) else Path(out.removeprefix("file://")).resolve()
    runner = runner or SubprocessRunner(console)
    submit = submit or RayJobSubmitter(dashboard)

    console.print(f"cluster {config.get('cluster_name', config_path.stem)} ({config_path}); records: "
                  + (f"{out}, via {remote_out} on the head" if local_out else out), highlight=False)
    try:
        cluster_up(config_path, runner, console)
        if local_out is not None and _has_records(local_out):
            sync_up(config_path, local_out, remote_out, runner)
        with job_working_dir(suite_path) as working_dir:
            entrypoint = job_entrypoint(Path(suite_path).name, remote_out, extra_args, workers=workers,
                                        use_gpus=use_gpus, await_gpus=adds_nodes_on_demand(config))
            status = submit(ClusterJob(config_path, entrypoint, working_dir, remote_out), console)
    except subprocess.CalledProcessError as exc:
        console.print(f"[bold red]error:[/] {escape(shlex.join(map(str, exc.cmd)))} exited with {exc.returncode}",
                      highlight=False)
        return 1
    except ClusterError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return 1

    synced = True
    if local_out is not None:  # also after a failed job: what was computed is kept
        try:
            sync_down(config_path, remote_out, local_out, runner)
        except subprocess.CalledProcessError as exc:
            synced = False
            console.print(f"[bold red]error:[/] copying {remote_out} from the head failed (exit code "
                          f"{exc.returncode}); the records stay on the head until `ray down`: "
                          f"ray rsync-down {config_path} {remote_out}/ {local_out}/", highlight=False)
    if status != "SUCCEEDED":
        console.print(f"the Ray Job ended {status}; the records written so far are kept in {out}; "
                      "the same command resumes the run", highlight=False)
        return 1
    if synced:
        console.print(f"records and tables: {out}", highlight=False)
    return 0 if synced else 1


if __name__ == "__main__":
    sys.exit(main())
