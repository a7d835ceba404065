"""Sandbox fork server: a warm interpreter that runs one untrusted program at a time, one fork per test case.

Started by `reward_transfer.verifiers.code` as `python -I <this file> <workdir> <uid> <max_processes> <hidden dirs JSON>`; it
speaks length-prefixed JSON with that trusted parent on stdin/stdout. It never sees expected outputs: it
returns each test's raw stdout and the program's JSON-serialised return value, and the parent compares.
Standard library only, so it starts fast and imports nothing from the project.
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
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_NOATIME, MS_NODIRATIME, MS_REMOUNT, MS_BIND = 0x400, 0x800, 0x20, 0x1000
MS_REC, MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 0x4000, 0x40000, 0x200000, 0x1000000
_MOUNT_OPTION_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
                       "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME}
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
REPORT_FD = 3
TMPFS_OPTIONS = b"size=64m,nr_inodes=4096,mode=0711"
SETUP_FAILED_EXIT = 121


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


def setup_isolation(workdir: str, hidden: list[str]) -> dict:
    """Enter private mount and network namespaces, hide `hidden`, make everything read-only but `workdir`.

    Returns which protections are in force; each is skipped (and reported False) when the kernel refuses it.
    """
    features = {"namespaces": "none", "network_isolated": False, "readonly_fs": False,
                "pid_namespace": None, "separate_uid": os.geteuid() == 0, "private_proc": False,
                "hidden_dirs": False}
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
    python_dirs = [sys.base_prefix, sys.prefix, sys.exec_prefix, *sys.path]
    try:
        _hide_directories(hidden, python_dirs)
        features["hidden_dirs"] = True
    except OSError:
        pass
    os.makedirs(workdir, exist_ok=True)
    features["readonly_fs"] = _make_all_mounts_readonly()
    _mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV, TMPFS_OPTIONS)
    if uid == 0:
        # A fresh procfs that hides other users' processes: the program sees only its own.
        with contextlib.suppress(OSError):
            _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, b"hidepid=invisible")
            features["private_proc"] = True
    features["pid_namespace"] = _pid_namespace_method()
    if features["pid_namespace"] == "unshare":
        features["private_proc"] = _can_mount_private_proc()
    return features


def _pid_namespace_method() -> str | None:
    """"setns": this server can point each next child to a new pid namespace (real root); "unshare": only
    a child can create one for its own children (user namespace); None: no pid namespaces."""
    try:
        _new_pid_namespace_for_next_child(os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC))
        return "setns"
    except OSError:
        pass
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
        exit_code = code if isinstance(code, int) and not isinstance(code, bool) else (0 if code is None else 1)
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


def _test_process(job: dict, test_input, pipes: tuple[int, int, int], context: dict) -> None:
    """Body of the forked test process (after the pid-namespace shim, when there is one)."""
    try:
        stdin_r, stdout_w, report_w = pipes
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(stdin_r, 0)
        os.dup2(stdout_w, 1)
        os.dup2(devnull, 2)
        os.dup2(report_w, REPORT_FD)
        os.closerange(REPORT_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        os.setsid()
        os.chdir(context["program_dir"])
        _restrict_process(job, context["features"], context["uid"], context["max_processes"])
    except BaseException:
        os._exit(SETUP_FAILED_EXIT)
    _run_untrusted(job, test_input, context["program_dir"])


def _enter_pid_namespace(job: dict, test_input, pipes: tuple[int, int, int], context: dict) -> None:
    """For user-namespace mode: create the pid namespace here; the test process is its first child."""
    try:
        _libc_call(_LIBC.prctl, PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        _unshare_pid_and_mount_namespaces()
        init = os.fork()
        if init == 0:
            if context["features"]["private_proc"]:
                _mount_private_proc()
            _test_process(job, test_input, pipes, context)
        os.closerange(0, 65536)
        _, status = os.waitpid(init, 0)
        code = os.waitstatus_to_exitcode(status)
        os._exit(code if code >= 0 else 128 - code)
    except BaseException:
        os._exit(SETUP_FAILED_EXIT)


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


def run_test(job: dict, test_input, context: dict) -> dict:
    """Fork one test process, feed its stdin, collect stdout and report within the time limit."""
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    report_r, report_w = os.pipe()
    stdin_data = test_input.encode() if job["fn_name"] is None else b""
    # The test process is PID 1 of a fresh pid namespace: when it exits, the kernel kills everything it
    # left behind (daemons that escaped its session included). An init shim between would cost a fork.
    method = context["features"]["pid_namespace"]
    if method == "setns":
        _new_pid_namespace_for_next_child(context["pid_ns_fd"])
    entry = _enter_pid_namespace if method == "unshare" else _test_process
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        entry(job, test_input, (stdin_r, stdout_w, report_w), context)
    for fd in (stdin_r, stdout_w, report_w):
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    cap = job["max_output_bytes"]
    buffers = {stdout_r: bytearray(), report_r: bytearray()}
    poller = select.poll()
    for fd in (stdout_r, report_r, pidfd):
        poller.register(fd, select.POLLIN)
    os.set_blocking(stdin_w, False)
    if stdin_data:
        poller.register(stdin_w, select.POLLOUT)
    else:
        os.close(stdin_w)
    written, timed_out, truncated, exited = 0, False, False, False
    deadline = started + job["timeout_s"]
    while not exited:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        for fd, _event in poller.poll(remaining * 1000):
            if fd == pidfd:
                exited = True
            elif fd == stdin_w:
                try:
                    written += os.write(stdin_w, stdin_data[written:written + 65536])
                    done = written >= len(stdin_data)
                except BlockingIOError:
                    done = False
                except BrokenPipeError:
                    done = True
                if done:
                    poller.unregister(stdin_w)
                    os.close(stdin_w)
                    stdin_data = b""
            else:
                chunk = os.read(fd, 65536)
                if not chunk:
                    poller.unregister(fd)
                buffers[fd] += chunk
                if len(buffers[fd]) > cap:
                    truncated = True
        if truncated:
            break
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _, status, usage = os.wait4(pid, 0)
    if not context["features"]["pid_namespace"]:
        _kill_leftovers(pid, context)
    for fd in (stdout_r, report_r):
        os.set_blocking(fd, False)
        with contextlib.suppress(BlockingIOError):
            while len(buffers[fd]) <= cap and (chunk := os.read(fd, 65536)):
                buffers[fd] += chunk
        os.close(fd)
    if stdin_data:
        os.close(stdin_w)
    os.close(pidfd)
    truncated = truncated or len(buffers[stdout_r]) > cap
    return {"exit_code": os.waitstatus_to_exitcode(status), "timed_out": timed_out, "truncated": truncated,
            "stdout": bytes(buffers[stdout_r][:cap]).decode("utf-8", "replace"),
            "report": bytes(buffers[report_r][:cap]).decode("utf-8", "replace"),
            "cpu_s": usage.ru_utime + usage.ru_stime, "wall_s": time.monotonic() - started}


def run_program(job: dict, context: dict) -> list[dict]:
    """All tests of one program, each in a fresh process, in a fresh private directory."""
    program_dir = os.path.join(context["workdir"], "program")
    os.mkdir(program_dir, 0o700)
    try:
        if context["features"]["separate_uid"]:
            os.chown(program_dir, context["uid"], context["uid"])
        context["program_dir"] = program_dir
        return [run_test(job, test_input, context) for test_input in job["inputs"]]
    finally:
        _remove_tree(program_dir)


def _remove_tree(path: str) -> None:
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(root, name))
        for name in dirs:
            full = os.path.join(root, name)
            with contextlib.suppress(OSError):
                os.unlink(full) if os.path.islink(full) else os.rmdir(full)
    os.rmdir(path)


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
    features = setup_isolation(workdir, hidden)
    if features["namespaces"] == "user":
        max_processes += 2  # the namespace's count also includes this server and the pid-namespace helper
    context = {"workdir": workdir, "uid": uid, "max_processes": max_processes, "features": features,
               "pid_ns_fd": os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)}
    _send(replies, {"features": features})
    while True:
        try:
            (size,) = struct.unpack(">I", _read_exactly(requests, 4))
            job = json.loads(_read_exactly(requests, size))
        except EOFError:
            return
        _send(replies, {"results": run_program(job, context)})


if __name__ == "__main__":
    main()
