"""How ranks agree on who merges a stage's units.

Ranks started together by a launcher (``accelerate launch``, ``torchrun``) share a
torch.distributed process group: each runs its units, all meet at a barrier that also tells
them whether any rank failed, rank 0 merges, and the others wait for it at a second barrier,
so the next stage starts only on merged outputs. The group uses NCCL where every rank of the
node has its own GPU, gloo otherwise (it carries one integer per barrier, never features).

Ranks started apart (Slurm array tasks, explicit ``--rank``) never wait for each other: the
one that sees every unit committed merges, under an exclusive lock file created with
``O_CREAT | O_EXCL``, so two ranks that finish together never both merge. A lock left by a
killed process on this host is taken over; one from elsewhere is reported, never ignored.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from pipeline.config import (
    RunConfig,
    barrier_timeout_seconds,
    environment_number,
    launched_together,
    local_rank_from_environment,
    lock_stale_seconds,
)
from pipeline.errors import PrepError

log = logging.getLogger(__name__)

UNREADABLE_LOCK_GRACE_S = 60.0  # a lock still empty after this long was left by a killed process


@dataclass
class RankGroup:
    """The process group of ranks launched together; every call is a barrier for all of them."""

    rank: int
    world_size: int
    backend: str
    device: str

    def count(self, flag: bool) -> int:
        """Barrier that also sums a per-rank flag: how many ranks raised it."""
        import torch
        import torch.distributed as dist

        total = torch.tensor([int(flag)], dtype=torch.int64, device=self.device)
        try:
            dist.all_reduce(total)
        except RuntimeError as exc:  # torch's DistError family: a peer died or timed out
            why = str(exc).splitlines()[0].split("] ", 1)[-1].split(". ")[0]  # gloo's first clause
            raise PrepError(
                f"rank {self.rank}/{self.world_size}: another rank left the process group "
                f"(its node or process was lost: {why[:200]}); finished "
                "units are kept: run the same command again on every node to resume"
            ) from None
        return int(total.item())


_group: RankGroup | None = None


def launched_group(run: RunConfig) -> RankGroup | None:
    """The process group of this launch (created on first use), or None for ranks started apart."""
    global _group
    if not launched_together(run.rank, run.world_size):
        return None
    if _group is None:
        _group = _init_group(run.rank, run.world_size)
    return _group


def _init_group(rank: int, world_size: int) -> RankGroup:
    import torch
    import torch.distributed as dist

    local_rank = local_rank_from_environment() or 0
    local_world = environment_number(os.environ, "LOCAL_WORLD_SIZE", str(world_size), minimum=1)
    use_nccl = (
        torch.cuda.is_available()
        and dist.is_nccl_available()
        and local_world <= torch.cuda.device_count()
    )
    backend, device = ("nccl", f"cuda:{local_rank}") if use_nccl else ("gloo", "cpu")
    if use_nccl:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        timeout = timedelta(seconds=barrier_timeout_seconds())
        dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timeout)
        atexit.register(_destroy)
    log.info("rank %d/%d joined the process group (%s)", rank, world_size, backend)
    return RankGroup(rank, world_size, backend, device)


def _destroy() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


# -- ranks started apart: the merge lock ---------------------------------------------------------
@dataclass(frozen=True)
class LockHolder:
    host: str
    pid: int
    since: float

    def describe(self) -> str:
        return f"process {self.pid} on {self.host} since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.since))}"


@contextmanager
def held_lock(path: Path) -> Iterator[LockHolder | None]:
    """Hold ``path`` exclusively (a stage's merge, a rank's run); yields None when this process
    holds it, else who does. While held, its modification time is refreshed (a heartbeat), so a
    lock of a process gone from this host, or one from another host not refreshed for
    ``PREP_LOCK_STALE_S`` seconds (a task killed on a node that is gone), is taken over."""
    holder = _acquire(path)
    stop = threading.Event()
    if holder is None:
        beat = max(0.05, min(30.0, lock_stale_seconds() / 10))
        threading.Thread(target=_heartbeat, args=(path, stop, beat), daemon=True).start()
    try:
        yield holder
    finally:
        stop.set()
        if holder is None:
            path.unlink(missing_ok=True)


def _heartbeat(path: Path, stop: threading.Event, every: float) -> None:
    while not stop.wait(every):
        try:
            os.utime(path)
        except OSError:  # gone: the holder is releasing it
            return


def _acquire(path: Path) -> LockHolder | None:
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
    for _attempt in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_holder(path)
            if holder is not None and not _is_stale(holder, path):
                return holder
            log.warning("removing a lock left by a process that is gone: %s", path)
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(me) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return None
    raise PrepError(f"cannot take the lock {path}: it keeps reappearing")


def _read_holder(path: Path) -> LockHolder | None:
    """Who holds the lock; None when the file is gone, or unreadable for longer than a writer needs."""
    try:
        data = json.loads(path.read_text())
        return LockHolder(str(data["host"]), int(data["pid"]), float(data["since"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return None
        if age > UNREADABLE_LOCK_GRACE_S:
            return None  # killed between creating and writing it
        return LockHolder("unknown", -1, path.stat().st_mtime)  # being written right now


def _is_stale(holder: LockHolder, path: Path) -> bool:
    """A holder on this host: stale when its process no longer exists. One on another host:
    when its heartbeat stopped ``PREP_LOCK_STALE_S`` seconds ago (its node died or it was
    killed; the default, 10 minutes, leaves room for clocks that differ between nodes)."""
    if holder.pid <= 0:
        return False
    if holder.host != socket.gethostname():
        try:
            return time.time() - path.stat().st_mtime > lock_stale_seconds()
        except FileNotFoundError:
            return True
    if holder.pid == os.getpid():
        return True  # our own, left by an earlier merge attempt of this process
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
