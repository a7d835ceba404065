"""Does this machine's NVIDIA driver run the installed torch's CUDA build? `python -m reward_transfer.driver_check`

A torch wheel carries its CUDA runtime (torch 2.14.0 from the package index: CUDA 13.0), but the kernel driver is
the host's: a driver older than the runtime's major version leaves torch without a GPU (`torch.cuda.is_available()`
is False), and the only fix is another machine. `setup.sh` (on a GPU box) and `make gpu-check` run this first and
say in one line what to rent instead. Standard library only: it runs before anything else is importable.
"""

import ctypes
import re
import subprocess
import sys
from importlib import metadata

# The oldest Linux driver of each CUDA major version (NVIDIA's CUDA Toolkit release notes, "CUDA Toolkit and
# Corresponding Driver Versions"; within a major, minor-version compatibility runs any of its runtimes).
MIN_DRIVER = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def driver_cuda_version() -> tuple[int, int] | None:
    """The newest CUDA version the installed driver supports (`cuDriverGetVersion`), None without a driver."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    version = ctypes.c_int()
    if libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0:
        return None
    return version.value // 1000, (version.value % 1000) // 10


def driver_version() -> str | None:
    """The driver's own version as `nvidia-smi` prints it (e.g. 570.133.20), None when it cannot be asked."""
    try:
        output = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return output.strip().splitlines()[0] if output.strip() else None


def cuda_of_requirements(requirements: list[str]) -> tuple[int, int] | None:
    """The CUDA version a torch wheel's `Requires-Dist` pins (None: a CPU build)."""
    for requirement in requirements:
        # cu13 builds: cuda-toolkit[...]==13.0.3; cu12 builds: nvidia-cuda-runtime-cu12==12.8.90
        match = re.match(r"(?:cuda-toolkit(?:\[[^\]]*\])?|nvidia-cuda-runtime(?:-cu\d+)?)\s*==\s*(\d+)\.(\d+)",
                         requirement)
        if match:
            return int(match[1]), int(match[2])
    return None


def torch_cuda_version() -> tuple[int, int] | None:
    """The CUDA version the installed torch was built for, from its metadata (no import: it may not import), else
    from `torch.version.cuda`; None for a CPU build or no torch."""
    try:
        requirements = metadata.requires("torch") or []
    except metadata.PackageNotFoundError:
        return None
    if (found := cuda_of_requirements(requirements)) is not None:
        return found
    try:
        import torch
    except ImportError:
        return None
    return tuple(parse_version(torch.version.cuda)[:2]) if torch.version.cuda else None


def check(driver_cuda: tuple[int, int] | None, torch_cuda: tuple[int, int] | None, driver: str | None,
          torch_version: str) -> str | None:
    """None when the driver runs torch's CUDA build, else the one-line problem and what to rent instead."""
    if torch_cuda is None:
        return None  # a CPU build: nothing of the driver's matters
    wanted = f"{torch_cuda[0]}.{torch_cuda[1]}"
    minimum = MIN_DRIVER.get(torch_cuda[0], "its CUDA major version's")
    rent = (f"rent a machine whose driver supports CUDA >= {torch_cuda[0]}.0 (driver >= {minimum}; on Vast.ai: "
            f"`vastai search offers '... cuda_vers>={torch_cuda[0]}.0'`)")
    if driver_cuda is None:
        return f"no NVIDIA driver found (libcuda.so.1), but torch {torch_version} is a CUDA {wanted} build: {rent}"
    if driver_cuda[0] < torch_cuda[0]:
        return (f"the NVIDIA driver {driver or '(version unknown)'} supports CUDA up to {driver_cuda[0]}."
                f"{driver_cuda[1]}, but torch {torch_version} is a CUDA {wanted} build and will see no GPU: {rent}")
    return None


def main() -> int:
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        print("driver check: torch is not installed", file=sys.stderr)
        return 1
    driver_cuda, torch_cuda = driver_cuda_version(), torch_cuda_version()
    problem = check(driver_cuda, torch_cuda, driver_version(), torch_version)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    if torch_cuda is not None:
        print(f"driver check: driver {driver_version() or '?'} (CUDA {driver_cuda[0]}.{driver_cuda[1]}) runs torch "
              f"{torch_version} (CUDA {torch_cuda[0]}.{torch_cuda[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
