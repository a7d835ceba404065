"""The one model loader: devices, dtypes, tokenizers and causal LMs (reward models are added by training).

Every script loads models through this module so a path that works in one stage works in all of them.
"""

import json
import logging
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from reward_transfer.errors import UserError
from reward_transfer.remote_code import (
    remote_class,
    remote_config,
    remote_slow_tokenizer,
    restore_rotary_buffers,
)
from reward_transfer.storage import looks_like_local_path

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
    if looks_like_local_path(name_or_path):
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
        slow_class = remote_slow_tokenizer(name_or_path) if trust_remote_code else None
        if slow_class is not None:
            tokenizer = slow_class.from_pretrained(name_or_path)
        else:
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
    """A causal LM on `device` in `dtype` (see `pick_dtype`), in eval mode (remote code handled as for RMs)."""
    target = pick_device(device)
    config, trusted = _load_config(name_or_path, trust_remote_code or None)
    auto_map = getattr(config, "auto_map", None) or {}
    try:
        if trusted and "AutoModelForCausalLM" in auto_map:
            model_class = remote_class(auto_map["AutoModelForCausalLM"], name_or_path, "AutoModelForCausalLM")
            model = _from_pretrained(model_class, name_or_path, config, pick_dtype(target, dtype))
        else:
            model = AutoModelForCausalLM.from_pretrained(name_or_path, config=config, dtype=pick_dtype(target, dtype),
                                                         trust_remote_code=bool(trusted))
    except (OSError, ValueError) as err:
        raise _offline_hint(name_or_path, "causal LM", err) from err
    if getattr(model, "generation_config", None) is None:
        # transformers 5 gives a generation config only to GenerationMixin subclasses; remote code written for 4
        # (InternLM2) is none, and PEFT's causal-LM wrapper (SFT) reads the attribute.
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_model_config(model.config)
    return model.to(target).eval()


def _from_pretrained(model_class: type, name_or_path: str, config: Any, dtype: torch.dtype) -> PreTrainedModel:
    """`model_class.from_pretrained` on a prepared config; remote rotary buffers recomputed after loading."""
    model = model_class.from_pretrained(name_or_path, config=config, dtype=dtype)
    restored = restore_rotary_buffers(model)
    if restored:
        log.info("%s: recomputed the rotary buffers of %d remote-code modules", name_or_path, restored)
    return model


# ---------------------------------------------------------------------------------------------------------------
# Reward models
# ---------------------------------------------------------------------------------------------------------------

INIT_MODES = ("auto", "reward_model", "causal_lm_new_head")
HEAD_NAMES = ("score", "v_head", "classifier")
# Written beside a trained adapter/model: how its base was loaded, so eval/merge load it back the same way.
REWARD_MODEL_INFO = "reward_model.json"
LOADER_OPTIONS = {"init", "tokenizer_name_or_path", "trust_remote_code", "base_model", "merge", "trainable"}


def read_adapter_config(name_or_path: str) -> dict | None:
    """The adapter_config.json of a LoRA adapter (local dir or Hub repo), None when `name_or_path` is no adapter."""
    return adapter_config_or_reason(name_or_path)[0]


def adapter_config_or_reason(name_or_path: str) -> tuple[dict | None, str]:
    """(adapter_config.json or None, why not): a missing local path, a folder without the file, an offline or
    unreachable Hub, a repo that is missing or private, or a repo that is no adapter are told apart."""
    path = Path(name_or_path).expanduser()
    if (path / "adapter_config.json").is_file():
        return json.loads((path / "adapter_config.json").read_text()), ""
    if looks_like_local_path(name_or_path):
        if not path.exists():
            return None, "does not exist"
        return None, "is not a LoRA adapter (no adapter_config.json)"
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    try:
        return json.loads(Path(hf_hub_download(name_or_path, "adapter_config.json")).read_text()), ""
    except (OfflineModeIsEnabled, LocalEntryNotFoundError):  # offline, or the Hub unreachable, and not cached
        where = "the Hub is offline here (HF_HUB_OFFLINE=1)" if constants.HF_HUB_OFFLINE else "the Hub is unreachable"
        return None, f"is a Hub id, but {where} and it is not in the local cache"
    except RepositoryNotFoundError:
        return None, "is not a Hub repo this token can read (missing, or private: set HF_TOKEN)"
    except EntryNotFoundError:
        return None, "is a Hub repo but not a LoRA adapter (no adapter_config.json)"
    except Exception as err:  # network failures come in many types
        return None, f"could not be fetched from the Hub ({err.__class__.__name__}: {str(err).splitlines()[0]})"


def read_reward_model_info(name_or_path: str) -> dict:
    """The `reward_model.json` this project writes beside a trained model ({} when absent)."""
    path = Path(name_or_path).expanduser() / REWARD_MODEL_INFO
    return json.loads(path.read_text()) if path.is_file() else {}


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under PEFT (and DDP) wrappers."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def reward_head_name(model: torch.nn.Module) -> str:
    """Name of the scalar head module (`score` for transformers RMs, `v_head` for InternLM2-style ones)."""
    base = unwrap_model(model)
    for name in HEAD_NAMES:
        if isinstance(getattr(base, name, None), torch.nn.Module):
            return name
    raise UserError(f"{type(base).__name__}: no reward head found (looked for {', '.join(HEAD_NAMES)})")


def reward_token_id(model: torch.nn.Module) -> int | None:
    """The token appended before scoring (InternLM2's `<|reward|>`), None for models scoring the last real token."""
    return getattr(unwrap_model(model).config, "reward_token_id", None)


def _load_config(name_or_path: str, trust_remote_code: bool | None) -> tuple[Any, bool | None]:
    """The model config; remote config code runs only when allowed (None: when the config asks for it)."""
    if looks_like_local_path(name_or_path) and not Path(name_or_path).expanduser().exists():
        raise UserError(f"model path {name_or_path} does not exist")
    try:
        config_dict, _ = PretrainedConfig.get_config_dict(name_or_path)
        config_reference = (config_dict.get("auto_map") or {}).get("AutoConfig")
        if config_reference is None:
            return AutoConfig.from_pretrained(name_or_path, trust_remote_code=bool(trust_remote_code)), trust_remote_code
        if trust_remote_code is False:
            raise UserError(f"{name_or_path}: its config is remote code; set model.trust_remote_code=true (or null)")
        return remote_config(name_or_path, config_reference, config_dict), True
    except (OSError, ValueError) as err:
        raise _offline_hint(name_or_path, "model config", err) from err


def _model_family(config: Any, init: str, name_or_path: str) -> str:
    """seq_cls | remote_reward | causal_lm_new_head, checked against the init mode."""
    auto_map = getattr(config, "auto_map", None) or {}
    architectures = getattr(config, "architectures", None) or []
    is_seq_cls = "AutoModelForSequenceClassification" in auto_map or any(
        a.endswith("ForSequenceClassification") for a in architectures)
    is_remote_reward = "AutoModel" in auto_map and any("Reward" in a for a in architectures)
    is_causal_lm = "AutoModelForCausalLM" in auto_map or any(a.endswith("ForCausalLM") for a in architectures)
    if init == "causal_lm_new_head":
        if is_seq_cls or is_remote_reward:
            raise UserError(f"{name_or_path} is already a reward model; use model.init=reward_model to fine-tune it")
        if not is_causal_lm:
            raise UserError(f"{name_or_path} is not a causal LM ({', '.join(architectures) or 'no architectures'})"
                            "; model.init=causal_lm_new_head needs one")
        return "causal_lm_new_head"
    if is_remote_reward:
        return "remote_reward"
    if is_seq_cls:
        return "seq_cls"
    if is_causal_lm:
        raise UserError(f"{name_or_path} is a causal LM, not a reward model: set model.init=causal_lm_new_head "
                        "to train a new scalar head on it")
    raise UserError(f"{name_or_path} is not a reward model ({', '.join(architectures) or 'no architectures'})")


def _load_reward_base(name_or_path: str, init: str, dtype: torch.dtype, trust_remote_code: bool | None
                      ) -> PreTrainedModel:
    """The base reward model (or causal LM with a fresh one-output head) in `dtype`, remote code handled."""
    config, trust_remote_code = _load_config(name_or_path, trust_remote_code)
    auto_map = getattr(config, "auto_map", None) or {}
    if trust_remote_code is None:
        # The configs name these models on purpose; their custom head only exists in remote code.
        trust_remote_code = bool(auto_map)
    family = _model_family(config, init, name_or_path)
    # One label (id2label of length 1 sets num_labels=1); the remote configs default to 2.
    config.id2label, config.label2id = {0: "reward"}, {"reward": 0}
    if family == "remote_reward" and not trust_remote_code:
        raise UserError(f"{name_or_path} needs remote code (model.trust_remote_code=true): its head only exists there")
    remote = bool(auto_map) and trust_remote_code
    try:
        if family == "remote_reward":
            # Its auto_map only maps AutoModel: load the class directly.
            model = _from_pretrained(remote_class(auto_map["AutoModel"], name_or_path, "AutoModel"), name_or_path,
                                     config, dtype)
            if getattr(model.config, "reward_token_id", None) is None:
                raise UserError(f"{name_or_path}: remote-code reward model without config.reward_token_id")
        elif remote and "AutoModelForSequenceClassification" in auto_map:
            model = _from_pretrained(remote_class(auto_map["AutoModelForSequenceClassification"], name_or_path,
                                                   "AutoModelForSequenceClassification"), name_or_path, config, dtype)
        elif remote and family == "causal_lm_new_head" and "AutoModelForCausalLM" in auto_map:
            reference = auto_map["AutoModelForCausalLM"].replace("ForCausalLM", "ForSequenceClassification")
            model = _from_pretrained(remote_class(reference, name_or_path, "AutoModelForSequenceClassification"),
                                     name_or_path, config, dtype)
        elif family == "causal_lm_new_head":
            # hides the expected "score missing / lm_head unexpected" load report
            from trl.trainer.reward_trainer import suppress_seqcls_warning

            with suppress_seqcls_warning():
                model = AutoModelForSequenceClassification.from_pretrained(name_or_path, config=config, dtype=dtype)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(name_or_path, config=config, dtype=dtype)
    except (OSError, ValueError) as err:
        raise _offline_hint(name_or_path, "reward model", err) from err
    head = getattr(model, reward_head_name(model))
    if getattr(head, "out_features", 1) != 1:
        raise UserError(f"{name_or_path}: the head has {head.out_features} outputs; a reward model has one")
    model.config.num_labels = 1
    # A reward model never decodes; transformers-4 remote code would build a legacy KV cache (gone in 5).
    model.config.use_cache = False
    return model


def _distinct_pad_token(tokenizer: PreTrainedTokenizerBase) -> None:
    """Make the pad token differ from EOS: seq-cls models score the rightmost non-pad token, so pad == eos would
    skip the final EOS. Pads are masked, so any token other than the last real one works (unk, bos, reserved)."""
    if tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return
    reserved = [t for t in tokenizer.all_special_tokens + list(tokenizer.get_added_vocab()) if "reserved" in t]
    for candidate in (tokenizer.unk_token, *reserved, tokenizer.bos_token):
        if candidate is not None and candidate != tokenizer.eos_token:
            log.info("pad token %r equals EOS; padding with %r instead", tokenizer.pad_token, candidate)
            tokenizer.pad_token = candidate
            return
    raise UserError(f"tokenizer {tokenizer.name_or_path}: pad token equals EOS and no other token can pad; "
                    "add a pad token to the tokenizer")


def load_reward_model(name_or_path: str, device: str | torch.device | None = None,
                      dtype: str | torch.dtype | None = None, **options: Any) -> tuple[torch.nn.Module, Any]:
    """A reward model scoring with one scalar, and its tokenizer (pad set, distinct from EOS; right padding).

    `name_or_path`: a seq-cls RM with one output, an InternLM2-style remote-code RM, a LoRA adapter directory or
    Hub repo (its base resolved — itself possibly an adapter — and the adapter applied, trained head restored), or a
    merged directory. Options: `init` (auto | reward_model | causal_lm_new_head: a causal LM gets a new scalar
    head; an adapter's base loads as its reward_model.json records), `tokenizer_name_or_path`, `trust_remote_code` (None: only when the config maps remote code),
    `base_model` (override an adapter's base), `merge` (fold an adapter into the weights), `trainable` (adapter
    weights trainable). Returned in eval mode on `device` (default: GPU if any) in `dtype` (see `pick_dtype`).
    """
    unknown = set(options) - LOADER_OPTIONS
    if unknown:
        raise TypeError(f"load_reward_model: unknown option(s) {', '.join(sorted(unknown))}")
    init = options.get("init") or "auto"
    if init not in INIT_MODES:
        raise UserError(f"model.init: '{init}' is not one of {', '.join(INIT_MODES)}")
    target = pick_device(device)
    torch_dtype = pick_dtype(target, dtype)
    trust_remote_code = options.get("trust_remote_code")
    adapter_config = read_adapter_config(name_or_path)
    base_path = name_or_path
    if adapter_config is not None:
        info = read_reward_model_info(name_or_path)
        base_path = options.get("base_model") or info.get("base_model") or adapter_config.get("base_model_name_or_path")
        if not base_path:
            raise UserError(f"adapter {name_or_path}: adapter_config.json names no base model")
        # An adapter is a reward model whatever `init` says; how its base was loaded is the adapter's own record.
        base_init = info.get("init")
        try:
            if read_adapter_config(base_path) is not None:  # trained on top of another adapter
                model, _ = load_reward_model(base_path, "cpu", torch_dtype, trust_remote_code=trust_remote_code,
                                             merge=True)
            else:
                base_init = base_init or _adapter_base_init(base_path, trust_remote_code)
                model = _load_reward_base(base_path, base_init, torch_dtype, trust_remote_code)
        except UserError as err:
            raise UserError(f"adapter {name_or_path}: cannot load its base model {base_path}: {err}") from err
    else:
        model = _load_reward_base(name_or_path, "reward_model" if init == "auto" else init, torch_dtype,
                                  trust_remote_code)
    tokenizer_path = options.get("tokenizer_name_or_path") or (
        name_or_path if (Path(name_or_path).expanduser() / "tokenizer_config.json").is_file() else base_path)
    tokenizer = load_tokenizer(tokenizer_path, trust_remote_code=bool(getattr(model.config, "auto_map", None)),
                               padding_side="right")
    _distinct_pad_token(tokenizer)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.get_text_config().pad_token_id = tokenizer.pad_token_id
    if adapter_config is not None:
        model = _apply_adapter(model, name_or_path, adapter_config, bool(options.get("trainable")))
        if options.get("merge"):
            model = model.merge_and_unload()
    return model.to(target).eval(), tokenizer


def _adapter_base_init(base_path: str, trust_remote_code: bool | None) -> str:
    """Init mode for an adapter without `reward_model.json`: a causal-LM base means a new head was trained."""
    config, _ = _load_config(base_path, trust_remote_code)
    architectures = getattr(config, "architectures", None) or []
    auto_map = getattr(config, "auto_map", None) or {}
    reward_like = any(a.endswith("ForSequenceClassification") or "Reward" in a for a in architectures)
    return "reward_model" if reward_like or "AutoModelForSequenceClassification" in auto_map else "causal_lm_new_head"


def _apply_adapter(model: PreTrainedModel, adapter_path: str, adapter_config: dict, trainable: bool):
    """Wrap `model` with the LoRA adapter; warn loudly when the adapter does not carry the head."""
    from peft import PeftModel

    head = reward_head_name(model)
    saved = adapter_config.get("modules_to_save") or []
    if head not in saved and not (head in ("score", "classifier") and adapter_config.get("task_type") == "SEQ_CLS"):
        log.warning("adapter %s does not hold the reward head '%s': the base model's head is used as is "
                    "(for a new head that is an untrained, random one)", adapter_path, head)
    try:
        return PeftModel.from_pretrained(model, adapter_path, is_trainable=trainable)
    except (OSError, ValueError, RuntimeError) as err:
        raise UserError(f"adapter {adapter_path}: cannot apply to its base: {err}") from err
