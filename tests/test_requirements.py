"""The requirement sets resolve as each kind of machine installs them: no conflict, every pin as written.

Reads the package index's metadata only (`pip install --dry-run --ignore-installed --report`): nothing is
downloaded beyond metadata, so the GPU set (CUDA torch, vLLM) is checked on a CPU machine. This is the one
test that needs the network (the package index); it skips, saying so, where the index cannot be reached.
"""

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
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


def resolve(files: list[str], report: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--disable-pip-version-check", "--report", str(report)]
    for name in files:
        command += ["-r", str(REPO_ROOT / name)]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)


@pytest.fixture(scope="module")
def resolutions(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Both machine sets resolved in parallel (each takes about a minute of metadata requests)."""
    folder = tmp_path_factory.mktemp("resolve")
    with ThreadPoolExecutor(len(MACHINE_SETS)) as pool:
        jobs = {kind: pool.submit(resolve, files, folder / f"{kind}.json") for kind, files in MACHINE_SETS.items()}
        return {kind: (job.result(), folder / f"{kind}.json") for kind, job in jobs.items()}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(MACHINE_SETS))
def test_requirement_set_resolves_to_its_pins(kind, resolutions):
    result, report = resolutions[kind]
    if result.returncode != 0 and any(marker in result.stderr for marker in NETWORK_ERRORS):
        pytest.skip(f"the package index is not reachable: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, f"{kind} set does not resolve:\n{result.stderr[-3000:]}"
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
