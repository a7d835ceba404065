"""The code sandbox: APPS grading in both modes, and hostile programs that must earn nothing and harm nothing.

Every test runs real programs in the real sandbox workers (no fakes).
"""

import json
import os
import secrets
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from reward_transfer.errors import UserError
from reward_transfer.verifiers._sandbox_zygote import MAX_PRECOMPILED_CHARS
from reward_transfer.verifiers.code import (
    TestResult,
    close_default_pool,
    default_pool,
    extract_code,
    run_tests,
    run_tests_batch,
)

A_PLUS_B = {"inputs": ["1 2\n", "10 20\n", "-5 5\n"], "outputs": ["3\n", "30\n", "0\n"]}
SOLUTION_CLASS_TESTS = {"fn_name": "twoSum", "inputs": [[[2, 7, 11, 15], 9], [[3, 2, 4], 6]],
                        "outputs": [[[0, 1]], [1, 2]]}


def require(*features: str) -> None:
    """Skip unless the sandbox has at least one of these protections on this machine."""
    available = default_pool().features
    if not any(available.get(feature) for feature in features):
        pytest.skip(f"this machine does not allow the sandbox's {' or '.join(features)} (docs/code_sandbox.md)")


def sandbox_processes() -> list[int]:
    """Pids of live processes running under any sandbox uid."""
    uids = {str(uid) for uid in default_pool().uids}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        state = next(line for line in status.splitlines() if line.startswith("State:"))
        if set(uid_line.split()[1:]) & uids and "zombie" not in state:
            found.append(int(entry.name))
    return found


def processes_with_argument(argument: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if argument.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


# ---------------------------------------------------------------- extract_code

def test_extract_code_prefers_the_longest_python_fence():
    response = ("Here is my solution:\n```python\nimport sys\nprint(sum(map(int, sys.stdin.read().split())))\n```\n"
                "Example:\n```\npython3 sol.py < in.txt\n```\nOutput:\n```text\n3\n```")
    assert extract_code(response) == "import sys\nprint(sum(map(int, sys.stdin.read().split())))"


def test_extract_code_without_fence_and_with_unclosed_fence():
    assert extract_code("print(1)\n") == "print(1)"
    assert extract_code("Sure.\n```py\nprint(2)\n") == "print(2)"
    assert extract_code("```cpp\nint main(){}\n```") == "```cpp\nint main(){}\n```"


# ---------------------------------------------------------------- standard-input mode

def test_stdin_program_all_pass():
    result = run_tests("a, b = map(int, input().split())\nprint(a + b)", A_PLUS_B)
    assert (result.passed, result.total, result.all_passed, result.score) == (3, 3, True, 1.0)
    assert result.statuses == ["passed"] * 3


def test_stdin_whitespace_differences_and_list_form_outputs():
    tests = json.dumps({"inputs": [["3", "1 2 3"]], "outputs": [["1 2", "3"]]})
    code = "input()\nprint('  1\\n2   3  ')\n"
    assert run_tests(code, tests).all_passed


def test_stdin_partial_pass_wrong_and_error_statuses():
    code = "n = int(input())\nif n == 3:\n    raise ValueError('boom')\nprint(n * 2 if n != 2 else 5)"
    tests = {"inputs": ["1", "2", "3", "4"], "outputs": ["2", "4", "6", "8"]}
    result = run_tests(code, tests)
    assert (result.passed, result.total) == (2, 4)
    assert result.statuses == ["passed", "wrong", "error", "passed"]
    assert "ValueError" in result.details[2]


def test_stdin_large_input_and_output_and_unread_input():
    data = "\n".join(str(i) for i in range(200_000)) + "\n"  # ~1.3 MB each way, more than a pipe holds
    echo = "import sys\nprint('\\n'.join(sys.stdin.read().split()))"
    assert run_tests(echo, {"inputs": [data], "outputs": [data]}).all_passed
    assert run_tests("print(input())", {"inputs": [data], "outputs": ["0"]}).all_passed


def test_stdin_float_tolerance_but_exact_integers():
    tests = {"inputs": ["", ""], "outputs": ["0.3333333333\n", "1000000000000000000\n"]}
    assert run_tests("print(1/3)", {"inputs": [""], "outputs": tests["outputs"][:1]}).all_passed
    assert not run_tests("print(10**18 + 1)", {"inputs": [""], "outputs": tests["outputs"][1:]}).all_passed


def test_stdin_exit_calls_threads_and_atexit_behave_like_python():
    exit_early = "print(int(input()) + 1)\nexit()\nprint('never')"
    threaded = ("import threading\ndef main():\n    print(int(input()) + 1)\n"
                "threading.Thread(target=main).start()")
    at_exit = ("import atexit, io, os, sys\nbuf = io.StringIO()\n"
               "atexit.register(lambda: os.write(1, buf.getvalue().encode()))\nbuf.write(str(int(input()) + 1))")
    at_exit_then_exit = at_exit + "\nexit()"
    fast_io = ("import os, sys\nclass Out:\n    def __init__(self):\n        self.parts = []\n"
               "    def write(self, s):\n        self.parts.append(s)\n    def flush(self):\n"
               "        os.write(1, ''.join(self.parts).encode())\n        self.parts = []\n"
               "sys.stdout = Out()\nprint(int(input()) + 1)")
    tests = {"inputs": ["1"], "outputs": ["2"]}
    programs = [exit_early, threaded, at_exit, at_exit_then_exit, fast_io]
    assert [r.passed for r in run_tests_batch(programs, tests)] == [1] * len(programs)
    assert run_tests("print(2)\nimport sys\nsys.exit(3)", tests).statuses == ["error"]


def test_installed_libraries_are_importable_inside_the_sandbox():
    pytest.importorskip("numpy")
    code = "import numpy as np\nn = int(input())\nprint(int(np.arange(n).sum()))"
    assert run_tests(code, {"inputs": ["10", "100"], "outputs": ["45", "4950"]}).all_passed


def test_syntax_error_timeout_and_memory_statuses():
    assert run_tests("def broken(:\n", A_PLUS_B).statuses == ["error"] * 3
    assert run_tests("while True: pass", {"inputs": [""], "outputs": [""]}, timeout_s=0.5).statuses == ["timeout"]
    hog = run_tests("x = bytearray(2 * 1024 ** 3)", {"inputs": [""], "outputs": [""]}, memory_mb=256)
    assert hog.statuses == ["memory"]


def test_bad_test_specs_are_user_errors_and_never_evaluated():
    with pytest.raises(UserError, match="not valid JSON"):
        run_tests("print(1)", "{'inputs': [__import__('os').system('touch /tmp/pwned')]}")
    with pytest.raises(UserError, match="2 inputs but 1 outputs"):
        run_tests("print(1)", {"inputs": ["1", "2"], "outputs": ["1"]})
    assert run_tests("print(1)", {"inputs": [], "outputs": []}) == TestResult(0, 0)


# ---------------------------------------------------------------- call-based mode

def test_call_based_module_function_and_one_element_list_wrapping():
    tests = {"fn_name": "add", "inputs": [[1, 2], [3, 4], [5, 6]], "outputs": [[3], 7, [[11]]]}
    result = run_tests("def add(a, b):\n    return a + b", tests)
    assert result.statuses == ["passed", "passed", "wrong"]
    assert run_tests("def add(a, b):\n    return [a + b]", tests).statuses == ["passed", "wrong", "passed"]


def test_call_based_solution_class_and_tuple_return():
    code = ("class Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n"
            "        for i, x in enumerate(nums):\n            if target - x in seen:\n"
            "                return (seen[target - x], i)\n            seen[x] = i\n")
    assert run_tests(code, json.dumps(SOLUTION_CLASS_TESTS)).all_passed


def test_call_based_starter_code_gets_the_apps_grader_imports():
    code = ("class Solution:\n    def maxProfit(self, prices: List[int]) -> int:\n"
            "        return max(accumulate(prices, max)) - min(prices)\n")
    tests = {"fn_name": "maxProfit", "inputs": [[[7, 1, 5, 3, 6, 4]]], "outputs": [6]}
    assert run_tests(code, tests).all_passed


def test_call_based_bools_are_not_numbers_and_missing_function_is_an_error():
    tests = {"fn_name": "f", "inputs": [[1]], "outputs": [True]}
    assert run_tests("def f(x):\n    return 1", tests).statuses == ["wrong"]
    assert run_tests("def f(x):\n    return True", tests).all_passed
    assert "no function f" in run_tests("def g(x):\n    return True", tests).details[0]


# ---------------------------------------------------------------- hostile programs: forging the verdict

def test_forged_verdict_prints_earn_nothing():
    code = ("print('All tests passed: 3/3')\nprint('{\"passed\": 3, \"total\": 3, \"status\": \"ok\"}')\n"
            "import os\nos.write(3, b'{\"status\": \"ok\", \"value\": 3}')")
    assert run_tests(code, A_PLUS_B).passed == 0


def test_object_whose_eq_is_always_true_earns_nothing():
    code = ("class Anything:\n    def __eq__(self, other):\n        return True\n    def __ne__(self, other):\n"
            "        return False\n    __hash__ = object.__hash__\n"
            "class Solution:\n    def twoSum(self, nums, target):\n        return Anything()\n")
    result = run_tests(code, SOLUTION_CLASS_TESTS)
    assert result.passed == 0
    assert "not JSON" in result.details[0]


def test_str_and_int_subclasses_earn_nothing():
    code = ("class Yes(str):\n    def __eq__(self, other):\n        return True\n    __hash__ = str.__hash__\n"
            "class One(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n"
            "def f(kind):\n    return Yes('no') if kind == 's' else One(-1)\n"
            "print(Yes('no'))\n")
    assert run_tests(code, {"fn_name": "f", "inputs": [["s"], ["i"]], "outputs": ["yes", 42]}).passed == 0
    assert run_tests(code, {"inputs": [""], "outputs": ["yes"]}).passed == 0


def test_monkeypatched_builtins_print_stdout_and_json_earn_nothing():
    code = ("import builtins, json, sys\n"
            "builtins.isinstance = lambda *a: True\nbuiltins.len = lambda *a: 0\n"
            "json.dumps = lambda *a, **k: '{\"status\": \"ok\", \"passed\": true}'\n"
            "class Liar:\n    def write(self, s):\n        return len(s)\n    def flush(self):\n        pass\n"
            "sys.stdout = Liar()\nbuiltins.print = lambda *a, **k: None\n"
            "def add(a, b):\n    return 'whatever'\n")
    tests = {"fn_name": "add", "inputs": [[1, 2]], "outputs": [3]}
    assert run_tests(code, tests).passed == 0
    assert run_tests(code.replace("def add", "print(3)\ndef add"), {"inputs": [""], "outputs": ["3"]}).passed == 0


def test_printing_expected_then_os_exit_earns_nothing_in_call_mode():
    code = "import os\nprint(7)\nos.write(1, b'7')\nos._exit(0)\ndef add(a, b):\n    return a + b"
    result = run_tests(code, {"fn_name": "add", "inputs": [[3, 4]], "outputs": [7]})
    assert result.statuses == ["error"]
    stdin_guess = "import os\nprint(3, flush=True)\nos._exit(0)"  # the first answer, printed for every input
    assert run_tests(stdin_guess, A_PLUS_B).statuses == ["passed", "wrong", "wrong"]


def test_killing_the_parent_earns_nothing_and_the_sandbox_survives():
    require("pid_namespace", "separate_uid")  # without both, this program could kill pytest itself
    code = ("import os, signal\nfor target in (os.getppid(), -1, 0):\n    try:\n"
            "        os.kill(target, signal.SIGKILL)\n    except OSError:\n        pass\n"
            "for pid in os.listdir('/proc'):\n    if pid.isdigit():\n        try:\n"
            "            os.kill(int(pid), signal.SIGKILL)\n        except OSError:\n            pass\n"
            "print('all 3 tests passed')\n")
    assert run_tests(code, A_PLUS_B).passed == 0
    assert os.getpid() and run_tests("print(sum(map(int, input().split())))", A_PLUS_B).all_passed


# ---------------------------------------------------------------- hostile programs: escaping the box

def test_environment_secrets_are_not_visible(monkeypatch):
    require("private_proc", "separate_uid")
    secret = "hf_" + secrets.token_hex(12)
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setenv("WANDB_API_KEY", secret)
    close_default_pool()  # workers started from now on see the parent environment with the secret in it
    code = ("import os, glob\nfound = [v for v in os.environ.values() if v.startswith('hf_')]\n"
            "for path in glob.glob('/proc/*/environ'):\n    try:\n"
            "        found += [x for x in open(path, 'rb').read().split(b'\\0') if b'hf_' in x]\n"
            "    except OSError:\n        pass\nprint(found[0].split(b'=')[-1].decode() if found and "
            "isinstance(found[0], bytes) else (found[0] if found else 'nothing'))\n")
    result = run_tests(code, {"inputs": [""], "outputs": [secret]})
    assert result.statuses == ["wrong"]


def test_cannot_write_outside_its_directory(tmp_path):
    require("readonly_fs")
    name = "rt-sandbox-escape-" + secrets.token_hex(6)
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    targets = [f"/var/tmp/{name}", f"/dev/shm/{name}", str(open_dir / name), str(Path.cwd() / name), f"/{name}"]
    # /tmp is the test's own private directory inside the sandbox (read-only when the Python runtime itself
    # lives under /tmp, as in a checkout there); never the host's /tmp.
    code = (f"import os\nok = 0\nfor path in {targets!r}:\n    try:\n        open(path, 'w').write('x')\n"
            "        ok += 1\n    except OSError:\n        pass\nopen('inside.txt', 'w').write('fine')\n"
            f"try:\n    open('/tmp/{name}', 'w').write('private')\nexcept OSError:\n    pass\n"
            "print(ok, open('inside.txt').read())\n")
    targets.append(f"/tmp/{name}")
    try:
        result = run_tests(code, {"inputs": [""], "outputs": ["0 fine"]})
        assert result.all_passed, result
    finally:
        leaked = [path for path in targets if os.path.exists(path)]
        for path in leaked:
            os.unlink(path)
    assert leaked == []


def test_fork_bomb_is_capped_and_leaves_nothing_behind():
    require("separate_uid", "pid_namespace")
    code = ("import os, time\nchildren = 0\nfor _ in range(10000):\n    try:\n        if os.fork() == 0:\n"
            "            time.sleep(30)\n            os._exit(0)\n        children += 1\n    except OSError:\n"
            "        break\nprint(children)\n")
    result = run_tests(code, {"inputs": [""], "outputs": ["7"]}, timeout_s=3)
    if default_pool().features["separate_uid"]:
        assert result.all_passed, result  # RLIMIT_NPROC (8 processes) stopped it: itself plus 7 children
    else:
        assert result.statuses == ["wrong"] and result.details == [""], result  # capped a little lower
    assert sandbox_processes() == []


def test_memory_hog_is_stopped():
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024 * 1024))"
    assert run_tests(code, {"inputs": [""], "outputs": [""]}, memory_mb=300).statuses == ["memory"]


def test_infinite_loop_times_out_quickly():
    started = time.monotonic()
    result = run_tests("while True:\n    pass", A_PLUS_B, timeout_s=0.5)
    assert result.statuses == ["timeout"] * 3
    assert time.monotonic() - started < 20


def test_daemonised_grandchild_is_killed():
    require("pid_namespace")
    marker = f"{secrets.randbelow(10 ** 6)}.{secrets.randbelow(10 ** 6)}"
    code = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            "        for fd in range(3):\n            os.close(fd)\n"
            "        import sys\n"  # the allow-list root holds the Python runtime, not /bin
            f"        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(30)', '{marker}'])\n"
            "    os._exit(0)\n"
            "os.wait()\ntime.sleep(1)\nprint('daemon started')\n")
    seen_while_running: list[int] = []
    watcher = threading.Thread(target=lambda: [seen_while_running.extend(processes_with_argument(marker))
                                               or time.sleep(0.1) for _ in range(8)])
    watcher.start()
    result = run_tests(code, {"inputs": [""], "outputs": ["daemon started"]})
    watcher.join()
    assert result.all_passed, result
    assert seen_while_running, "the daemon never ran: the test would prove nothing"
    assert processes_with_argument(marker) == []
    assert sandbox_processes() == []


def test_huge_output_is_cut():
    started = time.monotonic()
    result = run_tests("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", {"inputs": [""], "outputs": ["x"]})
    assert result.statuses == ["wrong"]
    assert result.details == ["output limit exceeded"]
    assert time.monotonic() - started < 20


def test_no_network_even_to_loopback():
    require("network_isolated")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.5)
        port = server.getsockname()[1]
        code = (f"import socket\ntry:\n    s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                "    s.sendall(b'leak')\n    print('connected')\nexcept OSError:\n    print('offline')\n")
        assert run_tests(code, {"inputs": [""], "outputs": ["offline"]}).all_passed
        with pytest.raises(TimeoutError):
            server.accept()


def test_expected_outputs_cannot_be_found_on_disk_or_in_processes():
    require("hidden_dirs")
    answer = "answer-" + secrets.token_hex(8)
    planted = [Path(f"/tmp/rt-expected-{answer}.json"), Path.cwd() / f".rt-expected-{answer}.json"]
    for path in planted:
        path.write_text(json.dumps({"outputs": [answer]}))
        path.chmod(0o644)
    code = ("import glob, os\nhits = []\n"
            "paths = glob.glob('/tmp/*') + glob.glob('/tmp/.*') + glob.glob(os.path.expanduser('~/*'))\n"
            f"paths += glob.glob({str(Path.cwd())!r} + '/.*') + glob.glob('/proc/*/cmdline') + "
            "glob.glob('/proc/*/environ')\n"
            "for path in paths:\n    try:\n        text = open(path, 'rb').read().decode('utf-8', 'replace')\n"
            "    except OSError:\n        continue\n    if 'answer-' in text:\n"
            "        hits.append(text.split('answer-')[1][:16])\n"
            "print('answer-' + hits[0] if hits else 'nothing found')\n")
    try:
        result = run_tests(code, {"inputs": [""], "outputs": [answer]})
    finally:
        for path in planted:
            path.unlink()
    assert result.statuses == ["wrong"]


# ---------------------------------------------------------------- batches

def test_batch_scores_good_programs_around_hostile_ones():
    good = "a, b = map(int, input().split())\nprint(a + b)"
    hostile = [
        "while True:\n    pass",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(0, signal.SIGKILL)",
        "x = bytearray(4 * 1024 ** 3)",
        "import sys\nsys.stdout.write('9' * 10 ** 8)",
    ]
    codes = [good, *hostile[:2], good, *hostile[2:], good]
    results = run_tests_batch(codes, A_PLUS_B, workers=2, timeout_s=0.5, memory_mb=256)
    assert [r.passed for r in results] == [3, 0, 0, 3, 0, 0, 3]


def test_batch_with_one_spec_per_program_and_a_crashed_worker():
    specs = [A_PLUS_B, SOLUTION_CLASS_TESTS]
    codes = ["print(sum(map(int, input().split())))",
             "class Solution:\n    def twoSum(self, nums, target):\n"
             "        return [[i, j] for i in range(len(nums)) for j in range(i + 1, len(nums))"
             " if nums[i] + nums[j] == target][0]"]
    assert [r.all_passed for r in run_tests_batch(codes, specs)] == [True, True]
    pool = default_pool()
    for worker in pool._workers:
        os.kill(worker.process.pid, signal.SIGKILL)  # a sandbox crash must not stop later work
    results = run_tests_batch(codes, specs)
    assert all(r.total == 3 or r.total == 2 for r in results)
    assert [r.all_passed for r in run_tests_batch(codes, specs)] == [True, True]


def test_integers_beyond_pythons_4300_digit_limit_are_graded_like_any_other() -> None:
    """APPS answers can be huge integers: printed, parsed from stdin, returned, or written as JSON numbers in the
    spec. Python 3.11 refuses such conversions by default; none of them may turn a correct program into an error."""
    big = "7" * 5000
    stdin_spec = json.dumps({"inputs": [f"{big}\n"], "outputs": [f"{big}0\n"]})
    times_ten = "print(int(input()) * 10)"
    assert run_tests(times_ten, stdin_spec).statuses == ["passed"]
    assert run_tests("print(int(input()))", stdin_spec).statuses == ["wrong"]
    # A call-based spec with the integers as JSON numbers, returned as an int.
    doubled = "1" + "5" * 4999 + "4"  # 2 × 77…7 (5000 sevens)
    call_spec = '{"fn_name": "double", "inputs": [[' + big + ']], "outputs": [' + doubled + "]}"
    double = "def double(n):\n    return 2 * n"
    assert run_tests(double, call_spec).statuses == ["passed"]
    assert run_tests("def double(n):\n    return n", call_spec).statuses == ["wrong"]


def test_a_spec_the_json_parser_cannot_read_is_one_user_error() -> None:
    nested = '{"inputs": [' + "[" * 100_000 + "]" * 100_000 + '], "outputs": ["1"]}'
    with pytest.raises(UserError, match="not valid JSON"):
        run_tests("print(1)", nested)


def test_a_program_that_does_not_compile_fails_every_test_as_its_processes_would_without_starting_them():
    tests = {"inputs": ["1\n", "2\n", "3\n"], "outputs": ["1", "2", "3"]}
    broken = "print(int(input())\n"
    result = run_tests(broken, tests)
    assert result.statuses == ["error"] * 3 and result.processes == 0
    assert result.details[0].startswith("SyntaxError") and "solution.py, line 1" in result.details[0]
    # Past the size compiled up front, the test processes meet the same error: the same statuses and details.
    padded = run_tests(broken + "#" * (MAX_PRECOMPILED_CHARS + 1) + "\n", tests)
    assert padded.processes == 3 and (padded.statuses, padded.details) == (result.statuses, result.details)
    assert run_tests("print(int(input()))\0", tests).processes == 0  # a null byte: refused by compile() alike
    # A syntax error met at run time depends on the input: every test still runs.
    evaluated = run_tests("print(eval(input()))", {"inputs": ["1+1", "1+", "2*3"], "outputs": ["2", "", "6"]})
    assert evaluated.statuses == ["passed", "error", "passed"] and evaluated.processes == 3
