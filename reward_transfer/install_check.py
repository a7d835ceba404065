"""Import every stage's modules and print the versions that matter: `python -m reward_transfer.install_check`.

`setup.sh` runs it last, so a broken install (a missing dependency, an incompatible pin) fails there, in
seconds, not hours into a GPU run. Exits 1 naming the module that does not import.
"""

import importlib
import shutil
import sys
from importlib import metadata

# Beyond every stage's own modules (reward_transfer.stages): what the stages import at run time.
HELPER_MODULES = (
    "reward_transfer.verifiers.math",
    "reward_transfer.verifiers.code",
    "reward_transfer.verifiers.choice",
    "reward_transfer.domains",
    "reward_transfer.grid.executors",
    "reward_transfer.tiny_internlm2.modeling_internlm2",  # what InternLM2's remote code imports (einops, cache API)
    "sentencepiece",  # InternLM2's slow tokenizer
    "deepspeed",
)


def stage_modules() -> list[str]:
    """The module of every stage's function and schema, then the helpers."""
    from reward_transfer.stages import STAGES

    modules = [module for stage in STAGES.values() for module in (stage.function.split(":")[0], stage.schema) if module]
    return list(dict.fromkeys([*modules, *HELPER_MODULES]))


VERSIONS = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "deepspeed", "vllm")


def main() -> int:
    failed = []
    for name in stage_modules():
        try:
            importlib.import_module(name)
        except Exception as err:  # any import-time failure is what this check exists to report
            failed.append(f"{name}: {err.__class__.__name__}: {err}")
    import torch

    if torch.cuda.is_available() or shutil.which("nvidia-smi"):
        try:
            importlib.import_module("vllm")
        except Exception as err:
            failed.append(f"vllm: {err.__class__.__name__}: {err}")
    found = []
    for package in VERSIONS:
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package} -")
    print("install check: " + ", ".join(found))
    for line in failed:
        print(f"error: cannot import {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
