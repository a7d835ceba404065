"""The one rerun rule every stage follows, so finished work is never redone, lost or silently replaced.

A stage's output directory records the settings that decided it (`run_settings.json`: the config without the
keys that only say how fast or where, as generation's `RESUMABLE_KEYS` first separated them). Run again on a
complete output:
    same settings       → kept; the stage prints "already complete" and exits 0;
    different settings  → a one-line error naming each differing key, unless `overwrite=true`;
an unfinished output resumes where the stage supports it (generation batches, training checkpoints).
"""

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from reward_transfer.errors import UserError
from reward_transfer.storage import atomic_write_json, remove_stale_temporaries_of

SETTINGS_FILE = "run_settings.json"
# How fast, where, or under which label a run happens; never what it produces (shared by every stage).
COMMON_RESUMABLE_KEYS = ("output_dir", "paths", "overwrite", "logging", "huggingface", "progress", "name")


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": 1}} → {"a.b": 1}, so two configs can be compared key by key."""
    flat: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def describe_differences(old: dict, new: dict) -> str:
    """`key: old → new` for every key whose value differs."""
    old_flat, new_flat = flatten(old), flatten(new)
    keys = sorted(set(old_flat) | set(new_flat))
    return "; ".join(f"{k}: {old_flat.get(k)!r} → {new_flat.get(k)!r}" for k in keys
                     if old_flat.get(k) != new_flat.get(k))


def result_settings(cfg: DictConfig | dict, resumable_keys: tuple[str, ...] = ()) -> dict[str, object]:
    """The flattened settings that decide a stage's output: its config minus the resumable (how/where) keys."""
    tree = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    skip = (*COMMON_RESUMABLE_KEYS, *resumable_keys)
    return {k: v for k, v in flatten(tree).items() if not any(k == r or k.startswith(f"{r}.") for r in skip)}


def recorded_settings(output: Path) -> dict | None:
    """The settings a finished output was made with (None: no record)."""
    path = Path(output) / SETTINGS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_settings(output: Path, settings: dict) -> None:
    """Record `settings` in `output` (a staging directory, published with the rest of the output)."""
    atomic_write_json(Path(output) / SETTINGS_FILE, settings)


def refuse_other_settings(stage: str, output: Path, recorded: dict, settings: dict, what: str = "output_dir") -> None:
    """The one-line error for an output (or checkpoint) made with other settings."""
    differences = describe_differences(recorded, settings)
    if differences:
        raise UserError(f"{stage}: {what} {output} holds a run made with other settings ({differences}); "
                        "rerun with the same settings, set overwrite=true to replace it, or choose another output_dir")


def is_complete(stage: str, output: Path, settings: dict, overwrite: bool, finished: bool) -> bool:
    """Apply the rule to `output` as its stage starts: True when it holds this very run, finished (the caller says
    so and stops). Temporaries that killed writers of `output` left beside it are removed first.

    `finished`: the stage's own test that `output` is a complete result. Raises the one-line error when it holds
    another run, unless `overwrite` (then the caller replaces it once the new run is done).
    """
    output = Path(output)
    remove_stale_temporaries_of(output)  # what a writer of it killed mid-write or mid-replace left beside it
    if output.exists() and not output.is_dir():
        raise UserError(f"{stage}: output_dir {output} exists and is not a directory")
    if overwrite or not output.is_dir() or not any(output.iterdir()):
        return False
    recorded = recorded_settings(output)
    if recorded is None:
        raise UserError(f"{stage}: output_dir {output} holds files that are not a finished run of this stage "
                        f"(no {SETTINGS_FILE}); choose another output_dir or set overwrite=true to replace them")
    refuse_other_settings(stage, output, recorded, settings)
    if not finished:
        return False  # cut short with these very settings: nothing finished to keep, the stage redoes it
    print(f"{stage}: {output} is already complete with these settings; nothing to do", flush=True)
    return True


def to_plain(settings: Any) -> Any:
    """JSON round trip, so recorded and current settings compare alike (tuples as lists, numbers as JSON has them)."""
    return json.loads(json.dumps(settings, default=str))
