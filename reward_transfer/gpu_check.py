"""`make gpu-check`: the checks to run on a CUDA machine before a 50-hour paper run, offline, in minutes.

One line per check (PASS / FAIL / SKIP with why), exit 1 on any failure, at once without CUDA:
  driver     first: the host's NVIDIA driver runs the installed torch's CUDA build (else: what to rent instead)
  versions   torch / transformers on this box inside the supported range
  internlm2  the InternLM2 remote-code stand-in on the GPU in bf16: the project's scores = its own get_scores
  vllm       the vLLM backend generates on the tiny LM (skipped where vLLM is not installed)
  zero2      one DeepSpeed ZeRO-2 training step through `accelerate launch` (skipped without deepspeed)
  grid       the whole tiny grid (`reproduce.py profile=tiny`) on the GPU in bf16
With `--real` (`make gpu-check REAL=1`), after driver and versions: the preflight on the real Hub models instead
(`reproduce.py profile=preflight`: every kind of step of the paper run once on a few dozen pairs, one line per
step, stopping at the first failure), so a broken model, token or launcher shows up in minutes, not after the
10-20 hours of generation that precede the first InternLM2 step of the grid.

It runs on whatever torch/transformers the box has (a rented image's), not only on this project's pins. On a
box without registry access, `make gpu-wheels PYTHON_VERSION=3.x` (`python -m reward_transfer.gpu_check
wheels 3.x`, run where the package index is reachable) downloads the wheels of what such an image lacks into
.gpu-wheels/; this check then installs them with --no-index into a venv that sees the image's own packages,
and re-runs itself there. Only the standard library is imported before that.
"""

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WHEELS = REPO_ROOT / ".gpu-wheels"
CHECK_VENV = REPO_ROOT / ".gpu-check-venv"
# What the checks import beyond torch and transformers (module name → pip name).
NEEDED = {"trl": "trl", "peft": "peft", "accelerate": "accelerate", "datasets": "datasets", "hydra": "hydra-core",
          "omegaconf": "omegaconf", "sentencepiece": "sentencepiece", "einops": "einops", "dotenv": "python-dotenv",
          "matplotlib": "matplotlib", "math_verify": "math-verify", "deepspeed": "deepspeed"}
OPTIONAL = {"deepspeed"}  # its check is skipped without it
SUPPORTED = {"torch": ("2.11", "2.15"), "transformers": ("5.16.1", "6")}
CHECK_TIMEOUT_S = {"internlm2": 300, "vllm": 420, "zero2": 420, "grid": 900}
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled",
           "TOKENIZERS_PARALLELISM": "false"}


# What `make gpu-wheels` downloads: the packages above and their dependencies that an image with torch,
# transformers and their own dependencies (numpy, huggingface-hub, tokenizers, safetensors, pyyaml, ...) lacks.
WHEEL_PACKAGES = ("trl", "peft", "accelerate", "datasets", "pyarrow", "dill", "multiprocess", "xxhash", "pandas",
                  "python-dateutil", "pytz", "tzdata", "hydra-core", "omegaconf", "antlr4-python3-runtime",
                  "sentencepiece", "einops", "python-dotenv", "math-verify", "latex2sympy2_extended", "psutil",
                  "deepspeed", "hjson", "msgpack", "ninja", "py-cpuinfo", "pydantic", "pydantic-core",
                  "annotated-types", "typing-inspection", "matplotlib", "contourpy", "cycler", "fonttools",
                  "kiwisolver", "pillow", "pyparsing")


def download_wheels(python_version: str) -> int:
    """Fill .gpu-wheels with the versions installed here, as wheels for CPython `python_version` on Linux x86_64
    (binary ones from the index, sdist-only ones built here: pure Python)."""
    from importlib import metadata

    WHEELS.mkdir(exist_ok=True)
    pins = []
    for name in WHEEL_PACKAGES:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:  # not a dependency of this stack's versions (e.g. pytz for pandas 3)
            continue
    platforms = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
                                             "manylinux2014_x86_64", "any")]
    failed = []
    for pin in pins:
        download = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                                   f"--python-version={python_version}", "--implementation=cp", *platforms,
                                   f"--dest={WHEELS}", pin], capture_output=True, text=True)
        if download.returncode != 0:  # sdist only (deepspeed, antlr4): build a pure-Python wheel here
            build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                                    "--no-build-isolation", f"--wheel-dir={WHEELS}", pin], capture_output=True, text=True)
            if build.returncode != 0:
                failed.append(pin)
    size = sum(f.stat().st_size for f in WHEELS.iterdir()) / 2**20
    print(f"gpu-wheels: {len(list(WHEELS.glob('*.whl')))} wheels, {size:.0f} MiB in {WHEELS} for CPython "
          f"{python_version}" + (f"; not available: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _missing() -> list[str]:
    return [module for module in NEEDED if importlib.util.find_spec(module) is None]


def bootstrap(module: str = "reward_transfer.gpu_check") -> None:
    """Install what the image lacks from .gpu-wheels (no index) into a venv over the image's packages; re-exec
    `python -m <module>` there."""
    missing = [m for m in _missing() if m not in OPTIONAL]
    if not missing or os.environ.get("REWARD_TRANSFER_GPU_CHECK_VENV") or not WHEELS.is_dir():
        return
    print(f"gpu-check: installing {', '.join(NEEDED[m] for m in missing)} from {WHEELS} (no index)", flush=True)
    if not (CHECK_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(CHECK_VENV)], check=True)
    python = str(CHECK_VENV / "bin" / "python")
    wanted = [NEEDED[m] for m in _missing()]
    for package in wanted:  # one by one: a wheel that is absent (e.g. deepspeed) must not stop the others
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(WHEELS),
                        package], check=False)
    os.environ["REWARD_TRANSFER_GPU_CHECK_VENV"] = "1"
    os.execv(python, [python, "-m", module, *sys.argv[1:]])


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("+")[0].split(".")[:3] if part.isdigit())


class Report:
    """Prints one line per check and remembers failures."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def line(self, status: str, name: str, seconds: float, detail: str) -> None:
        print(f"{status:<4} {name:<10} {seconds:6.1f}s  {detail}", flush=True)
        if status == "FAIL":
            self.failed.append(name)


def _run(report: Report, name: str, command: list[str], env: dict, cwd: Path, success: str) -> None:
    started = time.perf_counter()
    try:
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                                timeout=CHECK_TIMEOUT_S[name])
    except subprocess.TimeoutExpired:
        report.line("FAIL", name, time.perf_counter() - started, f"timed out after {CHECK_TIMEOUT_S[name]}s")
        return
    seconds = time.perf_counter() - started
    if result.returncode == 0:
        report.line("PASS", name, seconds, success)
        return
    tail = [line for line in (result.stdout + result.stderr).strip().splitlines() if line.strip()][-3:]
    report.line("FAIL", name, seconds, f"exit {result.returncode}: " + " | ".join(tail))


def check_driver(report: Report) -> bool:
    """First: can this host's driver run the installed torch's CUDA build at all? (Else nothing else can run.)"""
    from importlib import metadata

    from reward_transfer import driver_check

    torch_cuda = driver_check.torch_cuda_version()
    if torch_cuda is None:
        return True  # a CPU build: "no CUDA device" below says the rest
    driver_cuda, driver = driver_check.driver_cuda_version(), driver_check.driver_version()
    problem = driver_check.check(driver_cuda, torch_cuda, driver, metadata.version("torch"))
    detail = problem or (f"driver {driver} supports CUDA {driver_cuda[0]}.{driver_cuda[1]}, torch is a CUDA "
                         f"{torch_cuda[0]}.{torch_cuda[1]} build")
    report.line("FAIL" if problem else "PASS", "driver", 0.0, detail)
    return problem is None


def check_versions(report: Report) -> None:
    import torch
    import transformers

    found = {"torch": torch.__version__, "transformers": transformers.__version__}
    outside = [f"{name} {version} (supported: >={SUPPORTED[name][0]},<{SUPPORTED[name][1]})"
               for name, version in found.items()
               if not _version_tuple(SUPPORTED[name][0]) <= _version_tuple(version) < _version_tuple(SUPPORTED[name][1])]
    device = torch.cuda.get_device_name(0)
    detail = f"torch {found['torch']} (CUDA {torch.version.cuda}), transformers {found['transformers']}, {device}, " \
             f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}"
    report.line("FAIL" if outside else "PASS", "versions", 0.0, "; ".join(outside) or detail)


def check_internlm2(report: Report, workdir: Path, device: str = "cuda") -> None:
    """Scores of the InternLM2 stand-in in bf16 (on the GPU), through the project vs its own get_scores."""
    started = time.perf_counter()
    try:
        import numpy as np
        import torch

        from reward_transfer.models import load_reward_model
        from reward_transfer.scoring import score_conversations
        from reward_transfer.tiny_internlm2 import build_tiny_internlm2

        path = build_tiny_internlm2(workdir / "internlm2", rope_scaling={"type": "dynamic", "factor": 2.0})
        problems = ["What is 2 + 2?", "Sort [3, 1, 2].", "Compute 17 \\times 23."]
        answers = ["The final answer is \\boxed{4}.", "print(sorted([3, 1, 2]))", "It is 391. " * 40]
        runs = []
        for _ in range(2):
            model, tokenizer = load_reward_model(str(path), device=device, dtype="bfloat16")
            runs.append(score_conversations(model, tokenizer, problems, answers, progress=False).scores)
        own = np.asarray(model.get_scores(tokenizer, [[{"role": "user", "content": p}, {"role": "assistant",
                                                                                        "content": a}]
                                                      for p, a in zip(problems, answers, strict=True)]))
        gap = float(np.abs(runs[0] - own).max())
        ok = gap < 2e-2 and np.array_equal(runs[0], runs[1]) and model.dtype == torch.bfloat16
        report.line("PASS" if ok else "FAIL", "internlm2", time.perf_counter() - started,
                    f"bf16 on {model.device}: max |ours - get_scores| = {gap:.2e}; two loads identical: "
                    f"{np.array_equal(runs[0], runs[1])}")
    except Exception as err:  # any failure of the stack is what this check reports
        report.line("FAIL", "internlm2", time.perf_counter() - started, f"{err.__class__.__name__}: {err}")


def main() -> int:
    if sys.argv[1:2] == ["wheels"]:
        return download_wheels(sys.argv[2] if len(sys.argv) > 2 else f"{sys.version_info[0]}.{sys.version_info[1]}")
    bootstrap()
    if importlib.util.find_spec("torch") is None:
        print("gpu-check: torch is not installed; run ./setup.sh (or use an image with torch)", file=sys.stderr)
        return 1
    if not check_driver(Report()):
        return 1
    import torch

    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device visible: it checks the GPU paths (bf16, vLLM, DeepSpeed) and needs an "
              "NVIDIA GPU; nothing was run", file=sys.stderr)
        return 1
    report = Report()
    if "--real" in sys.argv[1:]:
        check_versions(report)
        return _finish(report) if report.failed else run_preflight()
    env = {**os.environ, **OFFLINE, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    missing = _missing()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        check_versions(report)
        check_internlm2(report, work)
        hard = [m for m in missing if m not in OPTIONAL]
        if hard:
            for name in ("vllm", "zero2", "grid"):
                report.line("SKIP", name, 0.0, f"{', '.join(NEEDED[m] for m in hard)} not installed "
                                               "(./setup.sh, or make gpu-wheels here and carry .gpu-wheels/)")
            return _finish(report)
        tiny = work / "tiny"
        subprocess.run([sys.executable, "-m", "reward_transfer.tiny", "--out", str(tiny)], cwd=REPO_ROOT, env=env,
                       check=True, capture_output=True)
        if importlib.util.find_spec("vllm") is None:
            report.line("SKIP", "vllm", 0.0, "vllm is not installed (requirements-gpu.txt)")
        else:
            _run(report, "vllm", [sys.executable, "generate_preference_data.py", "--config-name=demo_math",
                                  "generation.backend=vllm", f"model.model_name_or_path={tiny / 'lm'}",
                                  "dataset.max_examples=6", "generation.max_new_tokens=48",
                                  "generation.gpu_memory_utilization=0.3", "generation.max_model_len=1024",
                                  f"output_dir={work / 'vllm'}", "progress=false"],
                 env, REPO_ROOT, "6 math problems sampled with vLLM on the tiny LM and labelled")
        data = work / "pairs"
        subprocess.run([sys.executable, "generate_preference_data.py", "--config-name=demo_math",
                        f"output_dir={data}", "progress=false"], cwd=REPO_ROOT, env=env, check=True,
                       capture_output=True)
        if "deepspeed" in missing:
            report.line("SKIP", "zero2", 0.0, "deepspeed is not installed (requirements-deepspeed.txt)")
        else:
            _run(report, "zero2", [sys.executable, "-m", "accelerate.commands.launch",
                                   "--config_file=deepspeed/2_2GPU.yaml", "--num_processes=1",
                                   "train_reward_model.py", "--config-name=demo_math",
                                   f"model.model_name_or_path={tiny / 'rm'}",
                                   f"dataset.datasets=[{{name_or_path:{data},split:train}}]", "train.max_steps=1",
                                   "train.gradient_accumulation_steps=1", f"output_dir={work / 'zero2'}"],
                 env, REPO_ROOT, "one ZeRO-2 optimizer step in bf16 (accelerate launch, DeepSpeed)")
        _run(report, "grid", [sys.executable, "reproduce.py", "profile=tiny", "profile.cpu_threads=null",
                              f"profile.tiny_models={tiny}", f"profile.models.general={tiny / 'rm'}",
                              f"profile.models.sft.math={tiny / 'lm'}", f"profile.models.sft.code={tiny / 'lm'}",
                              f"output_dir={work / 'grid'}"],
             env, REPO_ROOT, "the tiny grid ran on the GPU (bf16) and wrote its report")
    return _finish(report)


PREFLIGHT_DIR = REPO_ROOT / "outputs" / "preflight"


def run_preflight() -> int:
    """`reproduce.py profile=preflight` on the real models (Hub access and `.env`'s HF_TOKEN needed): its console
    lines pass through; the exit code is its own (non-zero at the first failing step, which it names)."""
    started = time.perf_counter()
    command = [sys.executable, "reproduce.py", "profile=preflight", f"output_dir={PREFLIGHT_DIR}"]
    print(f"gpu-check: preflight on the real models: {' '.join(command[1:])}", flush=True)
    code = subprocess.run(command, cwd=REPO_ROOT, check=False).returncode
    minutes = (time.perf_counter() - started) / 60
    print(f"gpu-check: preflight {'passed' if code == 0 else 'FAILED'} in {minutes:.1f} min (logs: "
          f"{PREFLIGHT_DIR / 'logs'})", flush=True)
    return code


def _finish(report: Report) -> int:
    if report.failed:
        print(f"gpu-check: FAILED: {', '.join(report.failed)}", flush=True)
        return 1
    print("gpu-check: all checks that ran passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
