"""Sandbox fork server: a warm interpreter that runs one untrusted program at a time, one fork per test case.

Started by `reward_transfer.verifiers.code` as `python -I <this file> <workdir> <uid> <max_processes> <hidden dirs JSON>`; it
speaks length-prefixed JSON with that trusted parent on stdin/stdout. It never sees expected outputs: it
returns each test's raw stdout and the program's JSON-serialised return value, and the parent compares.
Standard library only, so it starts fast and imports nothing from the project.

Test processes are forked from a template process that is split off before the first job and never holds job
data (it only receives file descriptors), so no test can find an earlier program's source, input or output in
its memory. Each test process gets its own mount and IPC namespaces, an empty size-limited tmpfs as its
directory, a private /proc and a seccomp filter (no keyrings, memfd, SysV/POSIX IPC, io_uring, namespace or
mount calls, socket families other than unix and IP).
"""

import atexit
import builtins
import contextlib
import ctypes
import json
import math
import os
import resource
import select
import signal
import socket
import struct
import sys
import threading
import time
import types

# Modules competitive programs import, loaded once here so each forked test starts warm.
for _name in ("array", "bisect", "collections", "copy", "datetime", "decimal", "fractions", "functools",
              "heapq", "itertools", "operator", "re", "statistics", "string", "typing"):
    __import__(_name)

_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWCGROUP = 0x08000000, 0x04000000, 0x02000000
NAMESPACE_FLAGS = CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP
MNT_DETACH = 2
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_NOATIME, MS_NODIRATIME, MS_REMOUNT, MS_BIND = 0x400, 0x800, 0x20, 0x1000
MS_REC, MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 0x4000, 0x40000, 0x200000, 0x1000000
_MOUNT_OPTION_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
                       "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME}
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
REPORT_FD = 3
TMPFS_OPTIONS = b"size=64m,nr_inodes=4096,mode=0711"
SANDBOX_DIR = "/sandbox"  # the test's directory (cwd, HOME, TMPDIR) inside the allow-list root
# Shared libraries the interpreter and extension modules load, besides the Python installation itself.
SYSTEM_LIBRARY_PATHS = ("/lib", "/lib64", "/lib32", "/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/local/lib",
                        "/etc/ld.so.cache")
DEVICES = ("null", "zero", "urandom", "random")
SETUP_FAILED_EXIT = 121
MAX_PRECOMPILED_CHARS = 1 << 20  # a larger program is compiled only by its test processes, under their limits


def _libc_call(function, *args) -> None:
    if function(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: bytes | None = None) -> None:
    def encode(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    _libc_call(_LIBC.mount, encode(source), encode(target), encode(fstype), flags, data)


def _write_file(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _make_all_mounts_readonly() -> bool:
    """Bind-remount every mount read-only (keeping its other flags); True when `/` itself became read-only."""
    root_done = False
    with open("/proc/self/mountinfo") as handle:
        mounts = [line.split() for line in handle]
    for fields in mounts:
        mount_point = fields[4].encode().decode("unicode_escape")
        options = fields[5].split(",")
        if "ro" in options:
            root_done = root_done or mount_point == "/"
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for option in options:
            flags |= _MOUNT_OPTION_FLAGS.get(option, 0)
        try:
            _mount(None, mount_point, None, flags)
        except OSError:
            continue
        root_done = root_done or mount_point == "/"
    return root_done


# Never hidden, even when the parent runs from one of them: programs need a working system.
_SYSTEM_DIRS = {"/", "/bin", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/opt", "/proc", "/sbin", "/sys", "/usr",
                "/var"}


def _is_under(path: str, ancestor: str) -> bool:
    return path == ancestor or path.startswith(ancestor.rstrip("/") + "/")


def _hide_directories(hidden: list[str], exposed: list[str]) -> None:
    """Cover each hidden directory with an empty tmpfs, bind-mounting back the exposed paths inside it.

    Hides the user's home, the project (datasets with expected outputs), shared temp dirs and sockets,
    while the interpreter's own directories (often under a home the sandbox uid cannot enter) stay visible.
    """
    real = sorted({os.path.realpath(path) for path in hidden if os.path.isdir(path)} - _SYSTEM_DIRS, key=len)
    roots: list[str] = []
    for path in real:
        if not any(_is_under(path, root) for root in roots):
            roots.append(path)
    keep = sorted({os.path.realpath(path) for path in exposed if os.path.isdir(path)}, key=len)
    keep = [path for i, path in enumerate(keep) if not any(_is_under(path, other) for other in keep[:i])]
    handles = {path: os.open(path, os.O_PATH | os.O_CLOEXEC) for path in keep
               if any(_is_under(path, root) for root in roots)}
    for root in roots:
        if any(_is_under(root, path) for path in keep):
            continue
        _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, b"size=1m,nr_inodes=1024,mode=0755")
        for path, handle in handles.items():
            if _is_under(path, root):
                os.makedirs(path, exist_ok=True)
                _mount(f"/proc/self/fd/{handle}", path, None, MS_BIND | MS_REC)
    for handle in handles.values():
        os.close(handle)


def _runtime_paths() -> list[str]:
    """What a test process may see of the host: the Python installation (and the venv's packages) plus the
    system's shared libraries. Interpreter search paths outside the installations (an editable project, the
    working directory) are left out."""
    prefixes = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sys.exec_prefix)}
    paths = set(prefixes) | {os.path.realpath(p) for p in sys.path
                             if p and any(_is_under(os.path.realpath(p), prefix) for prefix in prefixes)}
    paths |= {p for p in SYSTEM_LIBRARY_PATHS if os.path.exists(p)}
    paths = sorted((p for p in paths if os.path.exists(p)), key=len)
    return [p for i, p in enumerate(paths) if not any(_is_under(p, other) for other in paths[:i])]


def _bind_read_only(source: str, target: str, devices: bool = False) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "a"):
            pass
    _mount(source, target, None, MS_BIND | MS_REC)
    _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | (0 if devices else MS_NODEV))


def _enter_allowlist_root(workdir: str) -> None:
    """pivot_root into a new root holding only `_runtime_paths()`, four devices, an empty /proc and /sandbox;
    the host's other files are unmounted from this namespace, not merely covered."""
    root = os.path.join(workdir, "root")
    os.makedirs(root, exist_ok=True)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, b"size=1m,nr_inodes=4096,mode=0755")
    for path in _runtime_paths():
        _bind_read_only(path, root + path)
    for device in DEVICES:
        _bind_read_only(f"/dev/{device}", f"{root}/dev/{device}", devices=True)
    for name in ("proc", SANDBOX_DIR.lstrip("/"), ".old"):
        os.makedirs(os.path.join(root, name), mode=0o755, exist_ok=True)
    if not os.path.lexists(os.path.join(root, "tmp")):  # else the runtime itself lives under /tmp (a checkout)
        os.symlink(SANDBOX_DIR, os.path.join(root, "tmp"))
    _libc_call(_LIBC.syscall, _SYSCALLS["pivot_root"], root.encode(), f"{root}/.old".encode())
    os.chdir("/")
    _libc_call(_LIBC.umount2, b"/.old", MNT_DETACH)
    os.rmdir("/.old")
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def setup_isolation(workdir: str, hidden: list[str]) -> dict:
    """Enter private mount and network namespaces and an allow-list root (read-only); where the kernel refuses
    pivot_root, hide `hidden` and make every mount read-only instead. Returns which protections are in force;
    each is skipped (and reported False) when the kernel refuses it."""
    features = {"namespaces": "none", "network_isolated": False, "readonly_fs": False,
                "pid_namespace": None, "separate_uid": os.geteuid() == 0, "private_proc": False,
                "hidden_dirs": False, "allowlist_fs": False, "ipc_namespace": False, "seccomp": False,
                "program_dir": os.path.join(workdir, "program")}
    uid, gid = os.geteuid(), os.getegid()
    try:
        if uid == 0:
            _libc_call(_LIBC.unshare, CLONE_NEWNS | CLONE_NEWNET)
            features["namespaces"] = "root"
        else:
            _libc_call(_LIBC.unshare, CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET)
            _write_file("/proc/self/setgroups", "deny")
            _write_file("/proc/self/uid_map", f"0 {uid} 1")
            _write_file("/proc/self/gid_map", f"0 {gid} 1")
            features["namespaces"] = "user"
    except OSError:
        return features
    features["network_isolated"] = True
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    features["pid_namespace"] = _pid_namespace_method()  # probes /proc: before the root changes
    features["ipc_namespace"] = _in_forked_child(lambda: _libc_call(_LIBC.unshare, CLONE_NEWIPC))
    features["seccomp"] = _seccomp_program() is not None and _in_forked_child(_install_seccomp)
    try:
        _enter_allowlist_root(workdir)
        features.update(allowlist_fs=True, hidden_dirs=True, readonly_fs=True, program_dir=SANDBOX_DIR)
    except OSError:
        _hide_and_make_read_only(workdir, hidden, features)
    if features["allowlist_fs"] or features["pid_namespace"] == "setns":
        features["private_proc"] = True  # each test mounts the /proc of its own pid namespace, or has none
    elif features["pid_namespace"] == "unshare":
        features["private_proc"] = _can_mount_private_proc()
    return features


def _hide_and_make_read_only(workdir: str, hidden: list[str], features: dict) -> None:
    """The fallback view: the host's tree with `hidden` covered by empty tmpfs mounts, everything read-only."""
    try:
        _hide_directories(hidden, [sys.base_prefix, sys.prefix, sys.exec_prefix, *sys.path])
        features["hidden_dirs"] = True
    except OSError:
        pass
    os.makedirs(workdir, exist_ok=True)
    features["readonly_fs"] = _make_all_mounts_readonly()
    _mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV, TMPFS_OPTIONS)
    os.mkdir(features["program_dir"], 0o755)


def _pid_namespace_method() -> str | None:
    """"setns": this server can point each next child to a new pid namespace (real root); "unshare": only
    a child can create one for its own children (user namespace); None: no pid namespaces."""
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _new_pid_namespace_for_next_child(own)
        # Undo it: the next child (the template) must stay in this namespace to make one per test.
        _libc_call(_LIBC.setns, own, CLONE_NEWPID)
        return "setns"
    except OSError:
        pass
    finally:
        os.close(own)
    return "unshare" if _in_forked_child(_unshare_pid_and_mount_namespaces) else None


def _can_mount_private_proc() -> bool:
    def enter_and_mount() -> None:
        _unshare_pid_and_mount_namespaces()
        if not _in_forked_child(_mount_private_proc):
            raise OSError("cannot mount /proc")

    return _in_forked_child(enter_and_mount)


def _in_forked_child(action) -> bool:
    """Whether `action` succeeds in a throwaway child (probes that must not change this process)."""
    child = os.fork()
    if child == 0:
        try:
            action()
            os._exit(0)
        finally:
            os._exit(1)
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _unshare_pid_and_mount_namespaces() -> None:
    _libc_call(_LIBC.unshare, CLONE_NEWPID | CLONE_NEWNS)


def _mount_private_proc() -> None:
    """A /proc showing only the current pid namespace (for user-namespace mode, where hidepid can't help)."""
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY)


def _new_pid_namespace_for_next_child(own_pid_ns_fd: int) -> None:
    _libc_call(_LIBC.setns, own_pid_ns_fd, CLONE_NEWPID)
    _libc_call(_LIBC.unshare, CLONE_NEWPID)


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32))


def _drop_all_capabilities() -> None:
    header = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    _libc_call(_LIBC.capset, ctypes.byref(header), data)


# ---------------------------------------------------------------- seccomp

# System call numbers by architecture (x86_64, aarch64); the audit arch seccomp compares against.
_ARCHES = {
    "x86_64": (0xC000003E, {"socket": 41, "socketpair": 53, "clone": 56, "clone3": 435, "pivot_root": 155,
                            "add_key": 248, "request_key": 249, "keyctl": 250, "memfd_create": 319,
                            "memfd_secret": 447, "shmget": 29, "msgget": 68, "semget": 64, "mq_open": 240,
                            "io_uring_setup": 425, "userfaultfd": 323, "bpf": 321, "perf_event_open": 298,
                            "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "mount": 165,
                            "umount2": 166, "unshare": 272, "setns": 308, "open_tree": 428, "move_mount": 429,
                            "fsopen": 430, "fsmount": 432}),
    "aarch64": (0xC00000B7, {"socket": 198, "socketpair": 199, "clone": 220, "clone3": 435, "pivot_root": 41,
                             "add_key": 217, "request_key": 218, "keyctl": 219, "memfd_create": 279,
                             "memfd_secret": 447, "shmget": 194, "msgget": 186, "semget": 190, "mq_open": 180,
                             "io_uring_setup": 425, "userfaultfd": 282, "bpf": 280, "perf_event_open": 241,
                             "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "mount": 40,
                             "umount2": 39, "unshare": 97, "setns": 268, "open_tree": 428, "move_mount": 429,
                             "fsopen": 430, "fsmount": 432}),
}
_ARCH, _SYSCALLS = _ARCHES.get(os.uname().machine, (None, {}))
# Refused with EPERM: kernel keyrings (shared by every process of a uid), memory outside RLIMIT_AS (memfd,
# SysV/POSIX IPC), io_uring (bypasses the filter), and every way to change namespaces or mounts.
_DENIED = ("add_key", "request_key", "keyctl", "memfd_create", "memfd_secret", "shmget", "msgget", "semget",
           "mq_open", "io_uring_setup", "userfaultfd", "bpf", "perf_event_open", "ptrace", "process_vm_readv",
           "process_vm_writev", "mount", "umount2", "pivot_root", "unshare", "setns", "open_tree", "move_mount",
           "fsopen", "fsmount")
_ALLOWED_SOCKET_FAMILIES = (1, 2, 10)  # AF_UNIX, AF_INET, AF_INET6 (the network namespace has no route out)
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000
EPERM, ENOSYS, EAFNOSUPPORT = 1, 38, 97
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2


def _seccomp_program() -> list[tuple[int, int, int, int]] | None:
    """The BPF filter (code, jt, jf, k) for this architecture, or None where the numbers are not known."""
    if _ARCH is None:
        return None
    calls = _SYSCALLS
    program = [(_LD_W_ABS, 0, 0, 4), (_JEQ_K, 1, 0, _ARCH), (_RET_K, 0, 0, SECCOMP_RET_ERRNO | ENOSYS),
               (_LD_W_ABS, 0, 0, 0)]
    if os.uname().machine == "x86_64":  # the x32 ABI numbers its calls from 0x40000000
        program += [(_JGE_K, 0, 1, 0x40000000), (_RET_K, 0, 0, SECCOMP_RET_ERRNO | ENOSYS)]
    for name in _DENIED:
        program += [(_JEQ_K, 0, 1, calls[name]), (_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM)]
    # clone3 passes its flags in memory the filter cannot read: ENOSYS makes libc fall back to clone.
    program += [(_JEQ_K, 0, 1, calls["clone3"]), (_RET_K, 0, 0, SECCOMP_RET_ERRNO | ENOSYS)]
    program += [(_JEQ_K, 0, 4, calls["clone"]), (_LD_W_ABS, 0, 0, 16), (_JSET_K, 0, 1, NAMESPACE_FLAGS),
                (_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM), (_RET_K, 0, 0, SECCOMP_RET_ALLOW)]
    for name in ("socket", "socketpair"):
        unix, inet, inet6 = _ALLOWED_SOCKET_FAMILIES
        program += [(_JEQ_K, 0, 6, calls[name]), (_LD_W_ABS, 0, 0, 16), (_JEQ_K, 3, 0, unix),
                    (_JEQ_K, 2, 0, inet), (_JEQ_K, 1, 0, inet6), (_RET_K, 0, 0, SECCOMP_RET_ERRNO | EAFNOSUPPORT),
                    (_RET_K, 0, 0, SECCOMP_RET_ALLOW)]
    return [*program, (_RET_K, 0, 0, SECCOMP_RET_ALLOW)]


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def _install_seccomp() -> None:
    """Load the filter into this process (needs no_new_privs or CAP_SYS_ADMIN); it is inherited by children."""
    program = _seccomp_program()
    if program is None:
        raise OSError("no seccomp syscall table for this architecture")
    code = b"".join(struct.pack("HBBI", *instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len(program), ctypes.cast(buffer, ctypes.c_void_p))
    _libc_call(_LIBC.prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _libc_call(_LIBC.prctl, PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0)


# ---------------------------------------------------------------- inside the forked test process

def _restrict_process(job: dict, features: dict, uid: int, max_processes: int) -> None:
    """Limits and privileges of the test process; runs before any untrusted code."""
    cpu_seconds = math.ceil(job["timeout_s"]) + 1
    memory = job["memory_mb"] * 1024 * 1024
    limits = [(resource.RLIMIT_AS, memory), (resource.RLIMIT_CPU, cpu_seconds),
              (resource.RLIMIT_FSIZE, job["max_file_bytes"]), (resource.RLIMIT_CORE, 0),
              (resource.RLIMIT_NOFILE, 256)]
    # RLIMIT_NPROC counts every process of the real uid: only meaningful under a uid of our own.
    if features["separate_uid"] or features["namespaces"] == "user":
        limits.append((resource.RLIMIT_NPROC, max_processes))
    for limit, value in limits:
        resource.setrlimit(limit, (value, value))
    if features["namespaces"] == "root" or (features["namespaces"] == "none" and os.geteuid() == 0):
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    elif features["namespaces"] == "user":
        _drop_all_capabilities()
    _libc_call(_LIBC.prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    # A uid change clears both of these; set them afterwards.
    _libc_call(_LIBC.prctl, PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _libc_call(_LIBC.prctl, PR_SET_DUMPABLE, 1, 0, 0, 0)
    if features["seccomp"]:
        _install_seccomp()


def _private_test_state(job: dict, context: dict) -> None:
    """Per test: new mount and IPC namespaces (SysV and POSIX IPC objects die with the test), an empty tmpfs of
    `dir_bytes` as its directory (files of one test never reach the next; tmpfs memory is bounded), and the
    /proc of its own pid namespace."""
    features, program_dir = context["features"], context["features"]["program_dir"]
    flags = CLONE_NEWNS | (CLONE_NEWIPC if features["ipc_namespace"] else 0)
    _libc_call(_LIBC.unshare, flags)
    options = f"size={job['dir_bytes']},nr_inodes=1024,mode=0700".encode()
    _mount("tmpfs", program_dir, "tmpfs", MS_NOSUID | MS_NODEV, options)
    if features["separate_uid"]:
        os.chown(program_dir, context["uid"], context["uid"])
    if features["pid_namespace"] == "setns":
        with contextlib.suppress(OSError):  # none at all is as private as its own
            _mount_private_proc()


# APPS's own grader prepends these imports to call-based solutions (LeetCode-style starter code such as
# `def maxProfit(self, prices: List[int])` relies on them); numpy is left out to keep each test cheap.
APPS_CALL_BASED_PRELUDE = """\
import sys, time, itertools, collections, math, fractions, random, heapq
from itertools import accumulate, product, permutations, combinations
from collections import Counter, OrderedDict, deque, defaultdict, ChainMap
from functools import lru_cache
from math import sqrt, sin, cos, tan, ceil, fabs, floor, gcd, exp, log, log2
from typing import List, Tuple
from heapq import *
"""


def _fresh_interpreter_state(workdir: str) -> dict:
    """Reset what a fresh `python3 solution.py` would see; returns the globals of a new `__main__`."""
    os.environ.clear()
    # One BLAS/OpenMP thread: a thread per core would hit the process limit and the address-space limit.
    os.environ.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir,
                       "TMPDIR": workdir, "PYTHONIOENCODING": "utf-8", "OPENBLAS_NUM_THREADS": "1",
                       "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    sys.stdin = sys.__stdin__ = open(0, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = sys.__stderr__ = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.argv = ["solution.py"]
    # APPS answers can be integers of tens of thousands of digits (printed, parsed, returned): no 4,300-digit
    # limit here. The conversion cost counts against this test's own CPU and output limits.
    sys.set_int_max_str_digits(0)
    main = types.ModuleType("__main__")
    main.__dict__.update({"__builtins__": builtins, "__file__": os.path.join(workdir, "solution.py")})
    sys.modules["__main__"] = main
    return main.__dict__


def _finish_like_interpreter_exit() -> None:
    """What `python3` does at exit: join non-daemon threads, run atexit hooks."""
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()


def _describe(error: BaseException) -> str:
    try:
        return f"{type(error).__name__}: {error}"[:300]
    except BaseException:
        return "unprintable exception"


def _run_untrusted(job: dict, test_input, workdir: str) -> None:
    """Run the program on one input and leave: exit code, stdout and a report on fd 3. Never returns."""
    write, exit_now, dumps = os.write, os._exit, json.dumps
    report: dict = {"status": "ok"}
    exit_code = 0
    stdout = None
    try:
        namespace = _fresh_interpreter_state(workdir)
        stdout = sys.stdout
        if job["fn_name"] is not None:
            exec(compile(APPS_CALL_BASED_PRELUDE, "<apps prelude>", "exec"), namespace)
        exec(compile(job["code"], "solution.py", "exec"), namespace)
        if job["fn_name"] is not None:
            function = namespace.get(job["fn_name"])
            if not callable(function):
                if "Solution" not in namespace:
                    raise NameError(f"no function {job['fn_name']} and no class Solution")
                function = getattr(namespace["Solution"](), job["fn_name"])
            args = json.loads(test_input)
            value = function(*args) if isinstance(args, list) else function(args)
            try:
                report = {"status": "ok", "value": value}
                report_text = dumps(report)
            except (TypeError, ValueError) as error:
                report_text = dumps({"status": "error", "error": "return value is not JSON: " + _describe(error)})
            _finish_like_interpreter_exit()
            stdout.flush()
            write(REPORT_FD, report_text.encode())
            exit_now(0)
    except SystemExit as request:
        code = request.code
        # As CPython: None and False exit 0, True exits 1 (bool is an int), any other non-int object exits 1.
        exit_code = int(code) if isinstance(code, int) else (0 if code is None else 1)
        report = {"status": "exit", "code": exit_code}
    except MemoryError:
        report, exit_code = {"status": "memory"}, 1
    except BaseException as error:
        report, exit_code = {"status": "error", "error": _describe(error)}, 1
    with contextlib.suppress(BaseException):
        _finish_like_interpreter_exit()
    # Like interpreter shutdown: flush whatever sys.stdout now is (fast-IO wrappers), then the real one.
    for stream in (sys.stdout, stdout):
        try:
            if stream is not None:
                stream.flush()
        except BaseException:
            exit_code = exit_code or 1
    try:
        write(REPORT_FD, dumps(report).encode())
    except BaseException:
        write(REPORT_FD, b'{"status": "error", "error": "unreportable"}')
    exit_now(exit_code & 0xFF)


def _read_job(job_fd: int) -> dict:
    """This test's job (program, limits, its one input), sent by the zygote after the fork."""
    chunks = []
    while chunk := os.read(job_fd, 1 << 20):
        chunks.append(chunk)
    os.close(job_fd)
    return json.loads(b"".join(chunks))


def _test_process(job_fd: int, pipes: tuple[int, int, int], context: dict) -> None:
    """Body of the forked test process (after the pid-namespace shim, when there is one)."""
    try:
        job = _read_job(job_fd)
        stdin_r, stdout_w, report_w = pipes
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(stdin_r, 0)
        os.dup2(stdout_w, 1)
        os.dup2(devnull, 2)
        os.dup2(report_w, REPORT_FD)
        os.closerange(REPORT_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        os.setsid()
        if context["features"]["namespaces"] != "none":
            _private_test_state(job, context)
        os.chdir(context["features"]["program_dir"])
        _restrict_process(job, context["features"], context["uid"], context["max_processes"])
    except BaseException:
        os._exit(SETUP_FAILED_EXIT)
    _run_untrusted(job, job["input"], context["features"]["program_dir"])


def _enter_pid_namespace(job_fd: int, pipes: tuple[int, int, int], context: dict) -> None:
    """For user-namespace mode: create the pid namespace here; the test process is its first child."""
    try:
        _libc_call(_LIBC.prctl, PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        _unshare_pid_and_mount_namespaces()
        init = os.fork()
        if init == 0:
            # In a user namespace a new procfs is refused once no full /proc is visible (the allow-list
            # root has none): the test then sees an empty /proc, which is as private.
            with contextlib.suppress(OSError):
                _mount_private_proc()
            _test_process(job_fd, pipes, context)
        os.closerange(0, 65536)
        _, status = os.waitpid(init, 0)
        code = os.waitstatus_to_exitcode(status)
        os._exit(code if code >= 0 else 128 - code)
    except BaseException:
        os._exit(SETUP_FAILED_EXIT)


# ---------------------------------------------------------------- the template: forks tests, holds no job data

_STATUS = struct.Struct("iidd")  # pid, wait status, user and system CPU seconds


def _start_template(context: dict) -> socket.socket:
    """Fork the template process before any job arrives; returns the zygote's end of its control socket."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        ours.close()
        try:
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)  # the job channel is the zygote's alone
            os.dup2(null, 1)
            _template_loop(theirs, context)
        finally:
            os._exit(0)
    theirs.close()
    context["template_pid"] = pid
    return ours


def _template_loop(control: socket.socket, context: dict) -> None:
    """Fork one test process per request (four descriptors: job, stdin, stdout, report), reap it, report."""
    _libc_call(_LIBC.prctl, PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    method = context["features"]["pid_namespace"]
    entry = _enter_pid_namespace if method == "unshare" else _test_process
    while True:
        message, fds, _, _ = socket.recv_fds(control, 16, 4)
        if not message or len(fds) != 4:
            return
        if method == "setns":
            # The test process is PID 1 of a fresh pid namespace: when it exits, the kernel kills everything
            # it left behind (daemons that escaped its session included).
            _new_pid_namespace_for_next_child(context["pid_ns_fd"])
        pid = os.fork()
        if pid == 0:
            control.close()
            entry(fds[0], (fds[1], fds[2], fds[3]), context)
        for fd in fds:
            os.close(fd)
        control.send(struct.pack("i", pid))
        _, status, usage = os.wait4(pid, 0)
        control.send(_STATUS.pack(pid, status, usage.ru_utime, usage.ru_stime))


# ---------------------------------------------------------------- the trusted side of the zygote

def _kill_leftovers(pid: int, context: dict) -> None:
    """Without a pid namespace: kill the program's process group and everything running under its uid."""
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    if context["features"]["separate_uid"]:
        for _ in range(3):
            killer = os.fork()
            if killer == 0:
                try:
                    os.setresuid(context["uid"], context["uid"], context["uid"])
                    os.kill(-1, signal.SIGKILL)
                finally:
                    os._exit(0)
            os.waitpid(killer, 0)


TEST_FIELDS = ("code", "fn_name", "timeout_s", "memory_mb", "max_file_bytes", "dir_bytes")


def run_test(job: dict, test_input, context: dict) -> dict:
    """Have the template fork one test process; feed it its job and stdin, collect stdout and report in time."""
    job_r, job_w = os.pipe()
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    report_r, report_w = os.pipe()
    control = context["control"]
    payload = json.dumps({**{key: job[key] for key in TEST_FIELDS}, "input": test_input}).encode()
    stdin_data = test_input.encode() if job["fn_name"] is None else b""
    started = time.monotonic()
    socket.send_fds(control, [b"F"], [job_r, stdin_r, stdout_w, report_w])
    for fd in (job_r, stdin_r, stdout_w, report_w):
        os.close(fd)
    (pid,) = struct.unpack("i", control.recv(16))
    cap = job["max_output_bytes"]
    buffers = {stdout_r: bytearray(), report_r: bytearray()}
    poller = select.poll()
    for fd in (stdout_r, report_r, control.fileno()):
        poller.register(fd, select.POLLIN)
    pending = {job_w: payload, stdin_w: stdin_data}
    for fd, data in pending.items():
        os.set_blocking(fd, False)
        if data:
            poller.register(fd, select.POLLOUT)
    for fd in [fd for fd, data in pending.items() if not data]:
        os.close(fd)
        del pending[fd]
    timed_out, truncated, status = False, False, None
    deadline = started + job["timeout_s"]
    while status is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        for fd, _event in poller.poll(remaining * 1000):
            if fd == control.fileno():
                status = _STATUS.unpack(control.recv(64))
            elif fd in pending:
                try:
                    sent = os.write(fd, pending[fd][:65536])
                    pending[fd] = pending[fd][sent:]
                    done = not pending[fd]
                except BlockingIOError:
                    done = False
                except BrokenPipeError:
                    done = True
                if done:
                    poller.unregister(fd)
                    os.close(fd)
                    del pending[fd]
            else:
                chunk = os.read(fd, 65536)
                if not chunk:
                    poller.unregister(fd)
                buffers[fd] += chunk
                if len(buffers[fd]) > cap:
                    truncated = True
        if truncated:
            break
    if status is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        status = _STATUS.unpack(control.recv(64))
    if not context["features"]["pid_namespace"]:
        _kill_leftovers(pid, context)
    for fd in (stdout_r, report_r):
        os.set_blocking(fd, False)
        with contextlib.suppress(BlockingIOError):
            while len(buffers[fd]) <= cap and (chunk := os.read(fd, 65536)):
                buffers[fd] += chunk
        os.close(fd)
    for fd in pending:
        os.close(fd)
    _, wait_status, user_s, system_s = status
    truncated = truncated or len(buffers[stdout_r]) > cap
    return {"exit_code": os.waitstatus_to_exitcode(wait_status), "timed_out": timed_out, "truncated": truncated,
            "stdout": bytes(buffers[stdout_r][:cap]).decode("utf-8", "replace"),
            "report": bytes(buffers[report_r][:cap]).decode("utf-8", "replace"),
            "cpu_s": user_s + system_s, "wall_s": time.monotonic() - started}


def _compile_error(code: str) -> str | None:
    """Why the program cannot be compiled, or None. Compiling runs none of it: a syntax error (or a null byte) is
    the same for every input, and each test process would report it exactly so (`_run_untrusted`)."""
    if len(code) > MAX_PRECOMPILED_CHARS:
        return None  # left to the test processes and their limits
    try:
        compile(code, "solution.py", "exec")
    except (SyntaxError, ValueError) as error:
        return _describe(error)
    except Exception:  # e.g. MemoryError: not a property of the source alone
        return None
    return None


def run_program(job: dict, context: dict) -> list[dict]:
    """All tests of one program, each in a fresh process with a fresh private directory; a program that does not
    compile fails every test with its compile error without starting them (the results the processes would give)."""
    error = _compile_error(job["code"])
    if error is not None:
        failed = {"exit_code": 1, "timed_out": False, "truncated": False, "stdout": "", "cpu_s": 0.0, "wall_s": 0.0,
                  "report": json.dumps({"status": "error", "error": error}), "started": False}
        return [dict(failed) for _ in job["inputs"]]
    return [run_test(job, test_input, context) for test_input in job["inputs"]]


def _read_exactly(stream, size: int) -> bytes:
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return data


def _send(stream, message: dict) -> None:
    payload = json.dumps(message).encode()
    stream.write(struct.pack(">I", len(payload)) + payload)
    stream.flush()


def main() -> None:
    workdir, uid, max_processes, hidden = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr
    os.chmod(workdir, 0o711)
    pid_ns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)  # before the root changes
    features = setup_isolation(workdir, hidden)
    if features["namespaces"] == "user":
        max_processes += 3  # the namespace's count also includes this server, the template and the pid shim
    context = {"workdir": workdir, "uid": uid, "max_processes": max_processes, "features": features,
               "pid_ns_fd": pid_ns_fd}
    context["control"] = _start_template(context)
    _send(replies, {"features": {k: v for k, v in features.items() if k != "program_dir"}})
    while True:
        try:
            (size,) = struct.unpack(">I", _read_exactly(requests, 4))
            job = json.loads(_read_exactly(requests, size))
        except EOFError:
            return
        _send(replies, {"results": run_program(job, context)})


if __name__ == "__main__":
    main()
