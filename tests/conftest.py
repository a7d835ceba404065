"""Shared fixtures. Tests never reach the network: the Hub libraries are forced offline here."""

import contextlib
import os
import socket
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The token cache (paths.token_cache) of every stage the tests run, in-process or as a subprocess: a temporary
# folder per test process, never the user's ~/.cache (removed at the session's end).
TOKEN_CACHE = os.environ.setdefault("REWARD_TRANSFER_CACHE", tempfile.mkdtemp(prefix="rt-cache-"))

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """The tiny offline LM and RM of `python -m reward_transfer.tiny`, built once per test session."""
    from reward_transfer.tiny import ensure_tiny_models

    return ensure_tiny_models(tmp_path_factory.mktemp("tiny"))


def free_port() -> int:
    """A free loopback port, so concurrent `accelerate launch` runs don't fight over torchrun's default 29500."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def single_cpu_thread():
    """Tiny models on a shared 2-core machine train several times faster with one torch thread than with two."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_sessionstart(session) -> None:
    """Start the requirement resolves (network-bound, about a minute) as the session starts, in the one controlling
    process, when the whole suite or test_requirements runs: they overlap the other tests (under xdist the workers,
    spawned afterwards, find their folder in the environment)."""
    from test_requirements import RESOLVE_DIR, start_resolutions

    if hasattr(session.config, "workerinput") or RESOLVE_DIR in os.environ:
        return
    args = [Path(arg.split("::")[0]).resolve() for arg in session.config.args]
    tests = Path(__file__).resolve().parent
    if args and not any(arg in (tests, tests / "test_requirements.py", REPO_ROOT) for arg in args):
        return
    folder = Path(tempfile.mkdtemp(prefix="rt-resolve-"))
    os.environ[RESOLVE_DIR] = str(folder)
    session.config.requirement_resolutions = (start_resolutions(folder), folder)


def pytest_sessionfinish(session) -> None:
    import shutil

    processes, folder = getattr(session.config, "requirement_resolutions", ([], None))
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 9)  # the shell and its pip
            process.wait()
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
    # The controlling process made the cache and its workers share it: a worker that finishes first leaves it alone.
    if Path(TOKEN_CACHE).name.startswith("rt-cache-") and not hasattr(session.config, "workerinput"):
        shutil.rmtree(TOKEN_CACHE, ignore_errors=True)


# A single-node Slurm cluster for the executor tests: Debian's slurm-wlm and munge (installed by .ci/run), started
# here with a generated slurm.conf (localhost, linuxproc process tracking, no task plugin, ports and state under a
# temporary folder) and stopped by pid. Where the packages are missing the tests skip, saying so, except when
# RT_REQUIRE_ENGINES=1 (CI), where they must run.
SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue")
SLURM_CONF = """ClusterName=rt-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={dir}/munge/munge.sock
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=600
KillWait=5
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def _engines_required() -> bool:
    return os.environ.get("RT_REQUIRE_ENGINES") == "1"


def _start_daemon(command: list[str], ready: Path, what: str, folder: Path) -> None:
    import subprocess
    import time

    subprocess.run(command, check=True, capture_output=True, timeout=60)
    deadline = time.monotonic() + 30
    while not ready.exists():
        if time.monotonic() > deadline:
            logs = "\n".join(p.read_text()[-2000:] for p in folder.glob("*.log"))
            raise RuntimeError(f"{what} did not start:\n{logs}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A running single-node Slurm (SLURM_CONF set for this session); stopped and removed afterwards."""
    import shutil
    import subprocess
    import time

    missing = [name for name in SLURM_BINARIES if shutil.which(name) is None]
    if missing:
        message = f"Slurm is not installed here ({', '.join(missing)} missing: apt-get install slurm-wlm munge)"
        if _engines_required():
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("slurm")
    for sub in ("munge", "state", "spool"):
        (folder / sub).mkdir(mode=0o700)
    (folder / "munge" / "munge.key").write_bytes(os.urandom(1024))
    (folder / "munge" / "munge.key").chmod(0o600)
    munge = folder / "munge"
    _start_daemon(["munged", "--force", f"--key-file={munge / 'munge.key'}", f"--socket={munge / 'munge.sock'}",
                   f"--pid-file={munge / 'munged.pid'}", f"--log-file={folder / 'munged.log'}",
                   f"--seed-file={munge / 'seed'}"], munge / "munged.pid", "munged", folder)
    conf = folder / "slurm.conf"
    conf.write_text(SLURM_CONF.format(host=socket.gethostname().split(".")[0], ctld_port=free_port(),
                                      slurmd_port=free_port(), dir=folder, cpus=os.cpu_count()))
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    pids = [munge / "munged.pid"]
    try:
        _start_daemon(["slurmctld", "-f", str(conf)], folder / "slurmctld.pid", "slurmctld", folder)
        pids.append(folder / "slurmctld.pid")
        _start_daemon(["slurmd", "-f", str(conf)], folder / "slurmd.pid", "slurmd", folder)
        pids.append(folder / "slurmd.pid")
        deadline = time.monotonic() + 30
        while "idle" not in subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout:
            if time.monotonic() > deadline:
                raise RuntimeError("the Slurm node never became idle: " + (folder / "slurmctld.log").read_text()[-2000:])
            time.sleep(0.5)
        yield folder
    finally:
        subprocess.run(["scancel", "--full", "-u", "root"], capture_output=True, check=False)
        for pid_file in reversed(pids):
            if pid_file.exists():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_file.read_text().split()[0]), 15)
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved
