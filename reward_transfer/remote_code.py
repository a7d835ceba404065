"""Checkpoints whose code ships with them (InternLM2's remote code), written for transformers 4, made to load, run
and save under transformers 5: their slow tokenizer, legacy RoPE settings, tied-weight keys and rotary buffers."""

import copy
import functools
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch
from transformers.dynamic_module_utils import get_class_from_dynamic_module

from reward_transfer.errors import UserError

log = logging.getLogger(__name__)


def remote_slow_tokenizer(name_or_path: str) -> type | None:
    """The slow tokenizer class a checkpoint's remote code declares (`auto_map.AutoTokenizer[0]`), if any.

    Remote fast tokenizers written for transformers 4 (InternLM2's) are converted from the SentencePiece model
    at load time with converter APIs that transformers 5 changed: the conversion appends `<|im_start|>` and
    `<|im_end|>` as new ids beyond the vocabulary, merges pieces differently, and cannot be saved and loaded
    back. The slow class runs the checkpoint's own SentencePiece model and keeps every id, so it is used.
    """
    from transformers.models.auto.tokenization_auto import get_tokenizer_config

    config = get_tokenizer_config(name_or_path)
    references = (config.get("auto_map") or {}).get("AutoTokenizer")
    if not isinstance(references, (list, tuple)) or not references or not references[0]:
        return None
    return get_class_from_dynamic_module(references[0], name_or_path)


def _patch_list_tied_weights(model_class: type) -> None:
    """Remote code written for transformers 4 declares `_tied_weights_keys` as a list; transformers 5 expects a
    {target: source} dict and `save_pretrained` fails with "'list' object has no attribute 'keys'"."""
    module = sys.modules.get(model_class.__module__)
    classes = [obj for obj in vars(module).values() if isinstance(obj, type)] if module else [model_class]
    for cls in classes:
        if issubclass(cls, torch.nn.Module) and isinstance(cls.__dict__.get("_tied_weights_keys"), list):
            # The list only silenced warnings for heads that are not tied in these checkpoints.
            log.info("patching %s._tied_weights_keys (a list, as in transformers 4) to {}", cls.__name__)
            cls._tied_weights_keys = {}


def legacy_rope_scaling(rope: dict | None) -> dict | None:
    """`rope_scaling` as transformers-4 remote code reads it: None for plain RoPE, else a dict with `type`.

    transformers 5 rewrites a config's `rope_scaling` into its `rope_parameters` form, in place: None becomes
    {rope_type: default, rope_theta: ...} and scaling dicts gain keys. InternLM2's `_init_rope` then reads
    `rope_scaling["type"]` (KeyError) and its config check wants exactly {type, factor} (ValueError).
    """
    if not rope:
        return None
    kind = rope.get("type") or rope.get("rope_type") or "default"
    if kind == "default":
        return None
    return {"type": kind, **{k: v for k, v in rope.items() if k not in ("type", "rope_type", "rope_theta")}}


def remote_config(name_or_path: str, reference: str, config_dict: dict) -> Any:
    """A remote-code config built once from a private copy of config.json, `rope_scaling` kept in legacy form."""
    config_class = get_class_from_dynamic_module(reference, name_or_path)
    config_class.register_for_auto_class("AutoConfig")
    config_dict = copy.deepcopy(config_dict)
    rope = legacy_rope_scaling(config_dict.pop("rope_parameters", None) or config_dict.get("rope_scaling"))
    config_dict["rope_scaling"] = copy.deepcopy(rope)
    config = config_class.from_dict(config_dict)
    config.rope_scaling = rope
    return config


def write_legacy_rope_scaling(checkpoint_dir: Path) -> None:
    """Rewrite a saved remote-code config.json so its RoPE settings read as the checkpoint's own code expects.

    transformers 5 saves `rope_parameters`; InternLM2's config class (and transformers 4, and vLLM's InternLM2)
    read `rope_scaling`, and would silently drop a dynamic scaling otherwise.
    """
    path = Path(checkpoint_dir) / "config.json"
    config = json.loads(path.read_text())
    if "AutoConfig" not in (config.get("auto_map") or {}) or "rope_parameters" not in config:
        return
    config["rope_scaling"] = legacy_rope_scaling(config.pop("rope_parameters"))
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


# The package transformers loads every checkpoint's remote-code files into (`transformers_modules.<repo>.<file>`).
REMOTE_CODE_PACKAGE = "transformers_modules"


def _record_rotary_init() -> None:
    """Make each rotary-embedding class of every loaded remote module remember its constructor arguments (see
    `restore_rotary_buffers`). Every module, not only the one defining the model class: a reward wrapper in its
    own file imports the backbone (and its rotary classes) from another. Classes transformers itself
    re-initialises (`original_inv_freq`) are left alone."""
    remote = [module for name, module in list(sys.modules.items())
              if name.startswith(f"{REMOTE_CODE_PACKAGE}.") and module is not None]
    for cls in [obj for module in remote for obj in vars(module).values() if isinstance(obj, type)]:
        if "RotaryEmbedding" not in cls.__name__ or "__init__" not in cls.__dict__ or "_init_recorded" in cls.__dict__:
            continue
        original = cls.__init__

        @functools.wraps(original)
        def recording_init(self, *args, _original=original, **kwargs):
            _original(self, *args, **kwargs)
            self._init_arguments = (args, kwargs)

        cls.__init__ = recording_init
        cls._init_recorded = True


def restore_rotary_buffers(model: torch.nn.Module) -> int:
    """Recompute the non-persistent buffers of remote rotary embeddings (InternLM2's `inv_freq`, cos/sin caches).

    transformers 5 builds a model on the meta device and refills non-persistent buffers with `torch.empty_like`
    (uninitialised memory); it recomputes only its own rotary modules. Remote ones compute their buffers in
    `__init__`, so each is rebuilt on the CPU from its recorded arguments and its buffers copied over (device
    and dtype of the loaded ones). Returns how many modules were restored.
    """
    restored = 0
    for module in model.modules():
        arguments = getattr(module, "_init_arguments", None)
        if arguments is None or hasattr(module, "original_inv_freq"):
            continue
        args, kwargs = arguments
        with torch.device("cpu"):
            fresh = type(module)(*args, **{**kwargs, **({"device": None} if "device" in kwargs else {})})
        for name in module._non_persistent_buffers_set:
            loaded, value = getattr(module, name), getattr(fresh, name, None)
            if value is None or loaded is None:
                continue
            module.register_buffer(name, value.to(device=loaded.device, dtype=loaded.dtype), persistent=False)
        restored += 1
    return restored


def remote_class(reference: str, name_or_path: str, auto_class: str) -> type:
    """A model class from the checkpoint's remote code, patched for transformers 5 and registered so that
    `save_pretrained` copies its code files."""
    try:
        model_class = get_class_from_dynamic_module(reference, name_or_path)
    except (AttributeError, OSError, ValueError) as err:
        raise UserError(f"{name_or_path}: its remote code has no class {reference} ({err.__class__.__name__}); "
                        "no one-output reward model can be built from it with this transformers version") from err
    _patch_list_tied_weights(model_class)
    _record_rotary_init()
    model_class.register_for_auto_class(auto_class)
    return model_class
