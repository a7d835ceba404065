"""The requirement sets resolve as each kind of machine installs them: no conflict, every pin as written.

Reads the package index's metadata only (`pip install --dry-run --ignore-installed --report`): nothing is
downloaded beyond metadata, so the GPU set (CUDA torch, vLLM) is checked on a CPU machine. This is the one
test that needs the network (the package index); it skips, saying so, where the index cannot be reached.
"""

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
MACHINE_SETS = {
    "gpu": ["requirements.txt", "requirements-gpu.txt", "requirements-deepspeed.txt"],
    "cpu": ["requirements.txt", "requirements-cpu.txt", "requirements-deepspeed.txt"],
}
NETWORK_ERRORS = ("NewConnectionError", "Network is unreachable", "Temporary failure in name resolution",
                  "Could not fetch URL", "ConnectTimeoutError")
PIN = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;#]+)")


def pins(files: list[str]) -> dict[str, str]:
    """Every `name==version` line of the requirement files, by normalised name."""
    found = {}
    for name in files:
        for line in (REPO_ROOT / name).read_text().splitlines():
            match = PIN.match(line.strip())
            if match:
                found[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return found


RESOLVE_DIR = "RT_RESOLVE_DIR"  # where the session's background resolves write (set by conftest, read by workers)


def start_resolutions(folder: Path) -> list[subprocess.Popen]:
    """Start resolving every machine set in the background (conftest does when the session starts, so the minute
    of metadata requests overlaps the other tests); each writes <kind>.json, <kind>.log and, last, <kind>.rc."""
    started = []
    for kind, files in MACHINE_SETS.items():
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                   "--disable-pip-version-check", "--report", str(folder / f"{kind}.json")]
        for name in files:
            command += ["-r", str(REPO_ROOT / name)]
        wrapped = f'{shlex.join(command)} > {shlex.quote(str(folder / f"{kind}.log"))} 2>&1; ' \
                  f'echo $? > {shlex.quote(str(folder / f"{kind}.rc.tmp"))}; ' \
                  f'mv {shlex.quote(str(folder / f"{kind}.rc.tmp"))} {shlex.quote(str(folder / f"{kind}.rc"))}'
        started.append(subprocess.Popen(["sh", "-c", wrapped], cwd=REPO_ROOT, start_new_session=True))
    return started


@pytest.fixture(scope="module")
def resolutions(tmp_path_factory) -> dict[str, tuple[int, str, Path]]:
    """kind → (exit code, pip's output, report path), from the session's background resolves (started here when
    this module runs alone)."""
    folder = Path(os.environ.get(RESOLVE_DIR) or tmp_path_factory.mktemp("resolve"))
    if RESOLVE_DIR not in os.environ:
        start_resolutions(folder)
    finished, deadline = {}, time.monotonic() + 900
    for kind in MACHINE_SETS:
        while not (folder / f"{kind}.rc").exists():
            if time.monotonic() > deadline:
                pytest.fail(f"resolving the {kind} set took over 15 minutes")
            time.sleep(0.5)
        code = int((folder / f"{kind}.rc").read_text())
        finished[kind] = (code, (folder / f"{kind}.log").read_text(), folder / f"{kind}.json")
    return finished


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(MACHINE_SETS))
def test_requirement_set_resolves_to_its_pins(kind, resolutions):
    code, output, report = resolutions[kind]
    if code != 0 and any(marker in output for marker in NETWORK_ERRORS):
        pytest.skip(f"the package index is not reachable: {output.strip().splitlines()[-1]}")
    assert code == 0, f"{kind} set does not resolve:\n{output[-3000:]}"
    resolved = {re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower(): item["metadata"]["version"]
                for item in json.loads(report.read_text())["install"]}
    expected = pins(MACHINE_SETS[kind])
    wrong = {name: (version, resolved.get(name)) for name, version in expected.items()
             if resolved.get(name, "").split("+")[0] != version}
    assert not wrong, f"{kind} set resolves to other versions than pinned (pin, resolved): {wrong}"


def test_transformers_pin_is_inside_vllms_range():
    """vLLM 0.33.0 requires transformers>=5.16.1,<5.21 (its wheel's metadata): the shared pin must sit inside."""
    from packaging.version import Version

    version = Version(pins(["requirements.txt"])["transformers"])
    assert Version("5.16.1") <= version < Version("5.21")
    assert pins(["requirements-gpu.txt"])["vllm"] == "0.33.0"


@pytest.mark.slow
def test_the_gpu_torch_is_the_cuda_build_the_driver_check_and_docs_assume(resolutions):
    """The resolved GPU torch's own metadata names its CUDA runtime: 13.0 for torch 2.14.0 (auto_gpu.md's
    `cuda_vers>=13.0`, the driver check's minimum)."""
    from reward_transfer.driver_check import cuda_of_requirements

    code, output, report = resolutions["gpu"]
    if code != 0 and any(marker in output for marker in NETWORK_ERRORS):
        pytest.skip(f"the package index is not reachable: {output.strip().splitlines()[-1]}")
    torch = next(item["metadata"] for item in json.loads(report.read_text())["install"]
                 if item["metadata"]["name"] == "torch")
    assert cuda_of_requirements(torch.get("requires_dist", [])) == (13, 0)
