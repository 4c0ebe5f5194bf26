"""A real one-node Slurm for the tests: Debian's ``slurm-wlm`` and ``munge`` (``.ci/run`` installs
them), configured for this machine (its host name and CPUs, no GPUs), with every state, spool and
log folder in a temporary folder, started before the tests that need it and stopped after.

Every wait is bounded: a cluster that does not come up, or a job that never ends, fails the
test with the daemons' own log lines, never hangs it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import debian_tool, missing
from tests.pipeline.prep_process import free_port

START_TIMEOUT_S = 120.0
SLURM_PACKAGE = "slurm-wlm munge"
FINISHED = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
}


@dataclass
class SlurmCluster:
    """One node, one partition (``debug``); ``env`` points Slurm's commands at this cluster."""

    folder: Path
    env: dict[str, str]

    def command(self, *args: str, timeout: float = 30) -> str:
        """A Slurm client command's stdout; a failure fails the test with its stderr."""
        done = subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed: {done.stderr.strip()}\n{self.logs()}")
        return done.stdout

    def job_states(self, job: str) -> dict[str, tuple[str, str]]:
        """``{job id: (state, reason)}`` of every task of an array (or a job) Slurm still knows."""
        text = self.command("scontrol", "show", "job", "--oneliner", job)
        states = {}
        for line in text.splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            task = fields.get("ArrayTaskId")
            name = f"{fields['ArrayJobId']}_{task}" if task else fields["JobId"]
            states[name] = (fields["JobState"], fields.get("Reason", "None"))
        return states

    def wait(
        self, condition: Callable[[], bool], timeout: float, what: str, step: float = 0.5
    ) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"Slurm: {what} not within {timeout:.0f} s\n{self.logs()}")
            time.sleep(step)

    def wait_finished(self, job: str, timeout: float = 180) -> dict[str, tuple[str, str]]:
        """The final states of every task of ``job`` once none is pending or running."""
        found: dict[str, tuple[str, str]] = {}

        def finished() -> bool:
            found.clear()
            found.update(self.job_states(job))
            return bool(found) and all(state in FINISHED for state, _ in found.values())

        try:
            self.wait(finished, timeout, f"job {job} finished", step=1.0)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlast seen: {found}") from None
        return dict(found)

    def requeue(self, task: str, timeout: float = 60) -> None:
        """``scontrol requeue`` (SIGTERM, KillWait, back to the queue), then make the task eligible
        at once: Slurm holds a task requeued while suspended, and delays every requeued task's
        start by two minutes (``BeginTime``) that the tests need not wait."""
        self.command("scontrol", "requeue", task)
        self.wait(
            lambda: self.job_states(task)[task][0] == "PENDING",
            timeout,
            f"{task} back in the queue",
        )
        if self.job_states(task)[task][1] == "JobHeldAdmin":
            self.command("scontrol", "release", task)
        self.command("scontrol", "update", f"JobId={task}", "StartTime=now")

    def logs(self) -> str:
        tails = []
        for name in ("slurmctld.log", "slurmd.log", "munge/munged.log"):
            path = self.folder / name
            if path.is_file():
                tails.append(f"--- {name}\n" + "\n".join(path.read_text().splitlines()[-15:]))
        return "\n".join(tails)


def slurm_tools() -> None:
    """Skip (fail on CI) with one line naming the packages when they are not installed."""
    for tool in ("munged", "slurmctld", "slurmd", "sbatch"):
        debian_tool((tool,), SLURM_PACKAGE)
    if os.geteuid() != 0:
        missing("needs root to start munged as user munge and slurmd (CI runs as root)")


def write_config(folder: Path, env: dict[str, str]) -> Path:
    """slurm.conf for this machine: its short host name and CPU count, no GPUs (no GresTypes),
    process tracking without cgroups (``proctrack/linuxproc``, ``task/none``), no accounting."""
    host = socket.gethostname().split(".")[0]
    settings = {
        "ClusterName": "preptest",
        "SlurmctldHost": host,
        "SlurmctldPort": str(free_port()),
        "SlurmdPort": str(free_port()),
        "SlurmUser": "root",
        "SlurmdUser": "root",
        "AuthType": "auth/munge",
        "CredType": "cred/munge",
        "AuthInfo": f"socket={folder / 'munge' / 'munge.socket'}",
        "StateSaveLocation": str(folder / "state"),
        "SlurmdSpoolDir": str(folder / "spool"),
        "SlurmctldPidFile": str(folder / "slurmctld.pid"),
        "SlurmdPidFile": str(folder / "slurmd.pid"),
        "SlurmctldLogFile": str(folder / "slurmctld.log"),
        "SlurmdLogFile": str(folder / "slurmd.log"),
        "ProctrackType": "proctrack/linuxproc",
        "TaskPlugin": "task/none",
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_CPU",
        "SchedulerType": "sched/backfill",
        "SchedulerParameters": "sched_interval=2",
        "ReturnToService": "2",
        "MpiDefault": "none",
        "SwitchType": "switch/none",
        "JobCompType": "jobcomp/none",
        "AccountingStorageType": "accounting_storage/none",
        "JobAcctGatherType": "jobacct_gather/none",
        "KillWait": "20",  # the grace period between SIGTERM and SIGKILL on requeue and cancel
        "MinJobAge": "600",  # finished jobs stay visible to scontrol for the whole session
        "SlurmctldTimeout": "30",
        "SlurmdTimeout": "60",
    }
    lines = [f"{key}={value}" for key, value in settings.items()]
    lines += [
        f"NodeName={host} CPUs={os.cpu_count()} State=UNKNOWN",
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
    ]
    config = folder / "slurm.conf"
    config.write_text("\n".join(lines) + "\n")
    env["SLURM_CONF"] = str(config)
    return config


def start_munge(folder: Path) -> None:
    """A munged of our own (own key, socket and logs), run as user munge as it insists on."""
    munge_dir = folder / "munge"
    munge_dir.mkdir(mode=0o700)
    key = munge_dir / "munge.key"
    subprocess.run(["mungekey", "--create", "--keyfile", str(key)], check=True, capture_output=True)
    user = pwd.getpwnam("munge")
    for path in (munge_dir, key):
        os.chown(path, user.pw_uid, user.pw_gid)
    key.chmod(0o600)
    started = subprocess.run(
        [
            "runuser",
            "-u",
            "munge",
            "--",
            "munged",
            "--force",
            f"--key-file={key}",
            f"--socket={munge_dir / 'munge.socket'}",
            f"--pid-file={munge_dir / 'munged.pid'}",
            f"--log-file={munge_dir / 'munged.log'}",
            f"--seed-file={munge_dir / 'munged.seed'}",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    if started.returncode != 0:
        raise AssertionError(f"munged did not start: {started.stderr.strip()}")


def stop_pid_file(path: Path) -> None:
    """End the daemon whose pid ``path`` holds (one we started), and wait for it to go."""
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, 9)


@contextmanager
def running_cluster() -> Iterator[SlurmCluster]:
    """munged, slurmctld and slurmd on this machine until the block ends, then stopped."""
    slurm_tools()
    folder = Path(tempfile.mkdtemp(prefix="prep-slurm-"))
    folder.chmod(0o755)  # munged, as user munge, must reach its socket folder
    for name in ("state", "spool"):
        (folder / name).mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    write_config(folder, env)
    cluster = SlurmCluster(folder, env)
    try:
        start_munge(folder)
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run(
                [daemon], env=env, check=True, capture_output=True, timeout=60
            )  # both fork into the background once they are up
        cluster.wait(lambda: node_idle(cluster), START_TIMEOUT_S, "the node became idle", 1.0)
        yield cluster
    finally:
        for pid_file in ("slurmd.pid", "slurmctld.pid", "munge/munged.pid"):
            stop_pid_file(folder / pid_file)
        shutil.rmtree(folder, ignore_errors=True)


def node_idle(cluster: SlurmCluster) -> bool:
    done = subprocess.run(
        ["sinfo", "--noheader", "--format=%T"],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.returncode == 0 and done.stdout.strip() in ("idle", "mixed", "allocated")
