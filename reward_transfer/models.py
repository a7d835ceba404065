"""The one model loader: devices, dtypes, tokenizers and causal LMs (reward models are added by training).

Every script loads models through this module so a path that works in one stage works in all of them.
"""

import logging
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from reward_transfer.errors import UserError

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, else the first CUDA GPU, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """bf16 on GPUs that support it, fp32 everywhere else (never bf16 on a CPU by accident)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is not None and dtype != "auto":
        if dtype not in DTYPES:
            raise UserError(f"unknown dtype '{dtype}' (use one of {', '.join(DTYPES)})")
        return DTYPES[dtype]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def _offline_hint(name_or_path: str, what: str, err: Exception) -> UserError:
    if Path(name_or_path).expanduser().exists() or name_or_path.startswith((".", "/", "~")):
        where = "path does not exist" if not Path(name_or_path).expanduser().exists() else f"{err}"
        return UserError(f"cannot load {what} from {name_or_path}: {where}")
    return UserError(
        f"cannot load {what} '{name_or_path}' from the Hugging Face Hub ({err.__class__.__name__}). "
        "Offline or no access? Download it once, or point the config at a local directory."
    )


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False, padding_side: str = "right"
                   ) -> PreTrainedTokenizerBase:
    """A tokenizer with a pad token (a distinct one where possible) and the requested padding side."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise _offline_hint(name_or_path, "tokenizer", err) from err
    if tokenizer.pad_token is None:
        # A pad distinct from EOS keeps "rightmost non-pad token" pointing at the real last token.
        candidate = getattr(tokenizer, "unk_token", None) or tokenizer.eos_token
        tokenizer.pad_token = candidate
        log.info("tokenizer %s has no pad token; using %r", name_or_path, candidate)
    tokenizer.padding_side = padding_side
    return tokenizer


def load_causal_lm(name_or_path: str, device: str | torch.device | None = None,
                   dtype: str | torch.dtype | None = None, trust_remote_code: bool = False):
    """A causal LM on `device` in `dtype` (see `pick_dtype`), in eval mode."""
    target = pick_device(device)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, dtype=pick_dtype(target, dtype), trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as err:
        raise _offline_hint(name_or_path, "causal LM", err) from err
    return model.to(target).eval()
