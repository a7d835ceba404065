"""Second red team: escapes that the first hostile-program suite did not try, each shown contained.

Every attack here is bounded (64-128 MB address space, seconds of CPU, no network beyond the sandbox's own
empty namespace) and each test removes whatever its attack could have left on the host (IPC objects, keys,
files), so a failure leaves nothing behind either. A dedicated one-worker pool runs each attack, so the
"earlier program" and the "later program" share a worker, as they would in a long generation run.
"""

import ctypes
import hashlib
import os
import platform
import secrets
import signal
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from reward_transfer.verifiers.code import SandboxPool, _parse_tests

pytestmark = pytest.mark.skipif(os.geteuid() != 0 and not Path("/proc/self/ns/user").exists(),
                                reason="the sandbox needs root or user namespaces")
LIBC = ctypes.CDLL(None, use_errno=True)
IPC_KEY = 0x52545254  # "RTRT"
MQ_NAME = b"/rt_redteam_mq"
X86_64 = platform.machine() == "x86_64"
SYS_ADD_KEY, SYS_REQUEST_KEY, SYS_KEYCTL = 248, 249, 250  # x86_64
KEY_SPEC_USER_KEYRING, KEYCTL_CLEAR = -4, 7


@pytest.fixture
def pool():
    """One warm worker: consecutive programs run in the same sandbox server."""
    sandbox = SandboxPool()
    sandbox.ensure_workers(1)
    yield sandbox
    uids = sandbox.uids
    sandbox.close()
    assert not _processes_of(uids), "sandbox processes outlived the pool"


def _processes_of(uids: list[int]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            real_uid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Uid:"))
            if real_uid in uids:
                found.append(int(entry.name))
    return found


def run(pool: SandboxPool, code: str, inputs: list[str], outputs: list[str], memory_mb: int = 128,
        timeout_s: float = 10.0):
    return pool.run(code, _parse_tests({"inputs": inputs, "outputs": outputs}), timeout_s, memory_mb)


# ------------------------------------------------------------------ another program's data in freed memory

SCAN = '''
import hashlib, re
wanted = {WANTED!r}
found = set()
with open("/proc/self/maps") as maps:
    regions = [line.split() for line in maps]
with open("/proc/self/mem", "rb", 0) as mem:
    for fields in regions:
        if "r" not in fields[1] or len(fields) > 5 and fields[5] in ("[vvar]", "[vvar_vclock]", "[vsyscall]"):
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        try:
            mem.seek(start)
            data = mem.read(end - start)
        except (OSError, OverflowError, ValueError):
            continue
        for match in re.finditer(rb"RT" rb"LEAK([0-9a-f]{{32}})", data):
            digest = hashlib.sha256(match.group(1)).hexdigest()
            if digest in wanted:
                found.add(wanted[digest])
print(" ".join(sorted(found)) or "CLEAN")
'''


def test_a_program_finds_no_earlier_programs_output_or_source_in_its_memory(pool):
    output_secret, source_secret = secrets.token_hex(16), secrets.token_hex(16)
    earlier = "# RT" + f"LEAK{source_secret} sits in the source\nprint('RT' + 'LEAK' + {output_secret!r})\n"
    assert run(pool, earlier, ["\n"], ["RTLEAK" + output_secret]).passed == 1
    wanted = {hashlib.sha256(output_secret.encode()).hexdigest(): "OUTPUT",
              hashlib.sha256(source_secret.encode()).hexdigest(): "SOURCE"}
    result = run(pool, SCAN.format(WANTED=wanted), ["\n"], ["CLEAN"], memory_mb=512)
    assert result.statuses == ["passed"], result.details


def test_a_sibling_test_of_the_same_program_leaves_nothing_in_memory(pool):
    """Test 2 of a program must not see test 1's input (its expected answer is often derivable from it)."""
    first_input = secrets.token_hex(16)
    wanted = {hashlib.sha256(first_input.encode()).hexdigest(): "INPUT"}
    program = ("import sys\nline = sys.stdin.readline().strip()\n"
               "if line != 'scan':\n    print('first')\nelse:\n" +
               "\n".join("    " + row for row in SCAN.format(WANTED=wanted).strip().splitlines()))
    result = run(pool, program, ["RTLEAK" + first_input + "\n", "scan\n"], ["first", "CLEAN"], memory_mb=512)
    assert result.statuses == ["passed", "passed"], result.details


# ------------------------------------------------------------------ state that outlives a test or a program

IPC_CREATE = f'''
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
made = []
if libc.shmget({IPC_KEY}, 4096, 0o1666) >= 0: made.append("shm")
if libc.msgget({IPC_KEY}, 0o1666) >= 0: made.append("msg")
if libc.semget({IPC_KEY}, 1, 0o1666) >= 0: made.append("sem")
libc.mq_open.restype = ctypes.c_int
if libc.mq_open({MQ_NAME!r}, 0o100 | 0o2, 0o666, None) >= 0: made.append("mq")
print("made", *made)
'''
IPC_FIND = f'''
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
seen = []
if libc.shmget({IPC_KEY}, 0, 0) >= 0: seen.append("shm")
if libc.msgget({IPC_KEY}, 0) >= 0: seen.append("msg")
if libc.semget({IPC_KEY}, 0, 0) >= 0: seen.append("sem")
if libc.mq_open({MQ_NAME!r}, 0o2) >= 0: seen.append("mq")
print(" ".join(seen) or "CLEAN")
'''


def _remove_host_ipc() -> list[str]:
    """Remove the attack's IPC objects from the host namespace; returns the kinds that were there."""
    found = []
    shm, msg, sem = LIBC.shmget(IPC_KEY, 0, 0), LIBC.msgget(IPC_KEY, 0), LIBC.semget(IPC_KEY, 0, 0)
    if shm >= 0:
        found.append("shm")
        LIBC.shmctl(shm, 0, None)  # IPC_RMID
    if msg >= 0:
        found.append("msg")
        LIBC.msgctl(msg, 0, None)
    if sem >= 0:
        found.append("sem")
        LIBC.semctl(sem, 0, 0)
    if LIBC.mq_unlink(MQ_NAME) == 0:
        found.append("mq")
    return found


def test_ipc_objects_do_not_reach_the_next_program_or_stay_on_the_host(pool):
    _remove_host_ipc()
    try:
        run(pool, IPC_CREATE, ["\n"], ["made"])
        later = run(pool, IPC_FIND, ["\n"], ["CLEAN"])
        assert later.statuses == ["passed"], later.details
    finally:
        assert _remove_host_ipc() == [], "IPC objects of the sandbox remained on the host"


@pytest.mark.skipif(not X86_64, reason="syscall numbers of x86_64")
def test_keyrings_of_the_sandbox_uid_carry_nothing_between_programs(pool):
    store = (f"import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
             f"key = libc.syscall({SYS_ADD_KEY}, b'user', b'rt_redteam', b'secret', 6, {KEY_SPEC_USER_KEYRING})\n"
             f"print('stored' if key >= 0 else 'refused')\n")
    fetch = (f"import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
             f"key = libc.syscall({SYS_REQUEST_KEY}, b'user', b'rt_redteam', None, 0)\n"
             f"print('LEAK' if key >= 0 else 'CLEAN')\n")
    try:
        run(pool, store, ["\n"], ["refused"])
        later = run(pool, fetch, ["\n"], ["CLEAN"])
        assert later.statuses == ["passed"], later.details
    finally:
        _clear_user_keyring(pool.uids[0])


def _clear_user_keyring(uid: int) -> None:
    child = os.fork()
    if child == 0:
        try:
            os.setresuid(uid, uid, uid)
            LIBC.syscall(SYS_KEYCTL, KEYCTL_CLEAR, KEY_SPEC_USER_KEYRING)
        finally:
            os._exit(0)
    os.waitpid(child, 0)


def test_files_of_one_test_are_gone_in_the_next(pool):
    program = '''
import os, tempfile
places = [os.getcwd(), os.environ.get("HOME", "/nonexistent"), os.environ.get("TMPDIR", "/nonexistent"),
          tempfile.gettempdir()]
found = [p for p in places if os.path.exists(os.path.join(p, "rt_state"))]
for p in places:
    try:
        with open(os.path.join(p, "rt_state"), "w") as f:
            f.write("x")
    except OSError:
        pass
print("SECOND" if found else "FIRST")
'''
    result = run(pool, program, ["\n", "\n", "\n"], ["FIRST", "FIRST", "FIRST"])
    assert result.statuses == ["passed"] * 3, result.details


# ------------------------------------------------------------------ memory outside the limit

def test_memfd_and_tmpfs_cannot_hold_memory_beyond_the_limit(pool):
    memfd = '''
import os
held = 0
try:
    for _ in range(12):
        fd = os.memfd_create("rt")
        for _ in range(16):
            os.write(fd, b"\\0" * (1 << 20))
        held += 16
except OSError:
    pass
print("held", held)
'''
    result = run(pool, memfd, ["\n"], ["held 0"], memory_mb=64)
    assert result.statuses == ["passed"], result.details
    files = '''
import os
written = 0
try:
    for n in range(200):
        with open(f"rt_fill_{n}", "wb") as f:
            for _ in range(8):
                f.write(b"\\0" * (1 << 20))
                f.flush()
                written += 1
except OSError:
    pass
print("bounded" if written <= 24 else f"unbounded {written}")
'''
    result = run(pool, files, ["\n"], ["bounded"], memory_mb=64)
    assert result.statuses == ["passed"], result.details


def test_the_graders_memory_per_test_is_bounded(pool):
    program = 'import os\nos.write(3, b\'{"status": "error", "error": "\' + b"A" * 3_000_000 + b\'"}\')\nos._exit(1)\n'
    result = run(pool, program, ["\n", "\n"], ["x", "x"])
    assert result.statuses == ["error", "error"]
    assert all(len(detail) <= 500 for detail in result.details), [len(d) for d in result.details]


# ------------------------------------------------------------------ what the program can see

def test_the_filesystem_view_is_the_python_runtime_and_an_empty_directory(pool):
    """Of the host only the Python installation and system libraries (and the empty directories leading to
    them) are visible: no project file, no data, no configuration, no other process."""
    host_files = [str(REPO_ROOT / "README.md"), str(REPO_ROOT / "data"), str(REPO_ROOT / "tests"), "/etc/passwd",
                  "/etc/hostname", "/etc/hosts", "/home", "/opt", "/srv", "/var/log", "/sys/class/net", "/run",
                  str(Path.home() / ".cache"),
                  *[p for p in ("/usr/bin/env", "/bin/sh") if not Path(p).resolve().is_relative_to(sys.base_prefix)]]
    program = f'''
import os
seen = [p for p in {host_files!r} if os.path.exists(p)]
repo = os.listdir({str(REPO_ROOT)!r}) if os.path.isdir({str(REPO_ROOT)!r}) else []
others = [p for p in os.listdir("/proc") if p.isdigit() and p != "1"]
print(" ".join(seen) or "CLEAN", [name for name in repo if name != ".venv"], len(others), len(os.listdir(".")))
'''
    result = run(pool, program, ["\n"], ["CLEAN [] 0 0"])
    assert result.statuses == ["passed"], result.details


def test_only_ip_and_unix_sockets_can_be_made(pool):
    program = '''
import socket
opened = []
for family, kind in ((16, socket.SOCK_RAW), (17, socket.SOCK_RAW), (40, socket.SOCK_STREAM),
                     (38, socket.SOCK_SEQPACKET), (9, socket.SOCK_DGRAM)):
    try:
        socket.socket(family, kind).close()
        opened.append(str(family))
    except OSError:
        pass
a, b = socket.socketpair()
inet = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
print(" ".join(opened) or "CLEAN", "unix-ok", "inet-ok")
'''
    result = run(pool, program, ["\n"], ["CLEAN unix-ok inet-ok"])
    assert result.statuses == ["passed"], result.details


# ------------------------------------------------------------------ honest programs

def test_sys_exit_false_is_success_as_in_cpython(pool):
    result = run(pool, "print(7)\nimport sys\nsys.exit(False)\n", ["\n"], ["7"])
    assert result.statuses == ["passed"], result.details
    result = run(pool, "print(7)\nimport sys\nsys.exit(True)\n", ["\n"], ["7"])
    assert result.statuses == ["error"]


def test_honest_programs_may_use_their_directory_tempfiles_and_threads(pool):
    program = '''
import os, sys, tempfile, threading
n = int(sys.stdin.readline())
with open("scratch.txt", "w") as f:
    f.write(str(n))
with tempfile.TemporaryDirectory() as d, open(os.path.join(d, "t"), "w") as g:
    g.write("ok")
out = []
t = threading.Thread(target=lambda: out.append(n * 2))
t.start(); t.join()
print(open("scratch.txt").read(), out[0])
'''
    result = run(pool, program, ["3\n", "5\n"], ["3 6", "5 10"])
    assert result.statuses == ["passed", "passed"], result.details


def test_nothing_of_the_sandbox_stays_on_the_host_after_a_batch(pool):
    workdirs = [worker.workdir for worker in pool._workers]
    run(pool, "import os\nos.fork() or os.setsid()\nprint(1)\n", ["\n"] * 3, ["1"] * 3)
    uids = pool.uids
    pool.close()
    assert not _processes_of(uids)
    assert not any(Path(d).exists() for d in workdirs)
    for table in ("shm", "msg", "sem"):
        rows = Path(f"/proc/sysvipc/{table}").read_text().splitlines()[1:]
        assert not [row for row in rows if int(row.split()[7 if table != "sem" else 4]) in uids], table
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
