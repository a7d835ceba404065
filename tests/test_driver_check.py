"""The driver check: a host whose NVIDIA driver predates the installed torch's CUDA build is refused in one line
that says what to rent. The host driver is the true external boundary here (this machine has none): its CUDA
version is passed in; the torch side is read from wheel metadata as it is published."""

import re
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from reward_transfer import driver_check

# The Requires-Dist of torch 2.14.0's manylinux wheel on the package index (its CUDA runtime) and of a cu128 build.
TORCH_2_14_REQUIRES = ["filelock", "cuda-toolkit[cublas,cudart,cufft,cufile,cupti,curand,cusolver,cusparse,"
                       "nvjitlink,nvrtc,nvtx]==13.0.3; platform_system == \"Linux\"",
                       "nvidia-cudnn-cu13==9.24.0.43; platform_system == \"Linux\""]
TORCH_CU128_REQUIRES = ["nvidia-cuda-runtime-cu12==12.8.90; platform_system == \"Linux\"",
                        "nvidia-cudnn-cu12==9.10.2.21; platform_system == \"Linux\""]


def test_the_cuda_build_is_read_from_the_wheels_requirements():
    assert driver_check.cuda_of_requirements(TORCH_2_14_REQUIRES) == (13, 0)
    assert driver_check.cuda_of_requirements(TORCH_CU128_REQUIRES) == (12, 8)
    assert driver_check.cuda_of_requirements(["filelock", "sympy>=1.13.3"]) is None  # the CPU build


@pytest.mark.parametrize(("driver_cuda", "torch_cuda", "refused"), [
    ((12, 8), (13, 0), True),   # a CUDA 12.8 driver (570.x) cannot run torch 2.14.0's CUDA 13.0 runtime
    ((13, 0), (13, 0), False),
    ((13, 1), (13, 0), False),  # minor-version compatibility within a major
    ((12, 2), (12, 8), False),
    (None, (13, 0), True),      # no driver at all
    (None, None, False),        # a CPU build of torch needs none
])
def test_a_driver_older_than_torchs_cuda_major_is_refused_with_what_to_rent(driver_cuda, torch_cuda, refused):
    problem = driver_check.check(driver_cuda, torch_cuda, "570.133.20", "2.14.0")
    assert (problem is not None) == refused
    if refused:
        assert "\n" not in problem and "cuda_vers>=13.0" in problem and "580.65.06" in problem


def test_on_this_cpu_machine_the_check_passes_quietly():
    result = subprocess.run([sys.executable, "-m", "reward_transfer.driver_check"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == ""


def test_the_rental_search_asks_for_the_driver_the_gpu_torch_needs():
    """auto_gpu.md's offer search filters on the CUDA version the GPU requirements' torch is built for."""
    pinned = re.search(r"^torch==(\S+)", (REPO_ROOT / "requirements-gpu.txt").read_text(), re.M)[1]
    assert pinned == "2.14.0"  # TORCH_2_14_REQUIRES above is this wheel's metadata
    major, _ = driver_check.cuda_of_requirements(TORCH_2_14_REQUIRES)
    search = next(line for line in (REPO_ROOT / "auto_gpu.md").read_text().splitlines()
                  if line.startswith("vastai search offers"))
    assert f"cuda_vers>={major}.0" in search

