"""Where a reproduction run keeps its files, and how result names map to the paper's table cells.

`reproduce.py` writes and `report.py` reads one run folder; both use only the functions below, so the
naming convention lives in one place:

    <run>/data/pref-data-<domain>          pair datasets (+ candidates) of the generation stage
    <run>/models/<name>[-merged]           trained adapters and merged reward models (log_history.json)
    <run>/eval/<name>/results.json         judgment accuracy of the model <name> on its target domain
    <run>/eval/<name>_best_of_n/results.json   best-of-n of the model <name> on its target domain
    <run>/active_learning/<domain>/<strategy>/state_r<k>   active-learning state after round k
    <run>/active_learning/<domain>/<strategy>/seed<s>/state_r<k>   the same, of the chain with seed s (several seeds)
    <run>/active_learning/<domain>/state   the one state of the original code's commands (each round rewrites it)
    <run>/grid.json                        sizes of the run (full set, subsets, AL rounds), for the report

Names follow the paper's config names (so a run made by hand with the original code's commands, in `outputs/`,
reads the same way); sizes are written as the paper writes them (`2.5k`, `20k`; `0k` for untouched):
    <d>_scratch                     ground-truth RM: SFT model trained on the full set of d
    <d>_<size>                      general RM fine-tuned on <size> pairs of d (`<d>_0k`: untouched)
    <s>_to_<d>_<size>               merged ground-truth RM of domain s fine-tuned on <size> pairs of d
    active_learning_<d>_<strategy>_r<k>   active learning on d, round k (strategy margin | random | argmin | ...)
    active_learning_<d>_<strategy>_s<s>_r<k>   the same, of the chain with seed s (profile.active_learning.seeds)
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PAPER_DOMAINS = ("math", "code")  # the paper's two domains (registered domains: reward_transfer/domains/)
BEST_OF_N_SUFFIX = "_best_of_n"

_SIZE = r"\d+(?:\.\d+)?k?"
_NAME = re.compile(
    rf"^(?:active_learning_(?P<al_domain>[a-z]+)_(?P<strategy>[a-z][a-z_]*?)(?:_s(?P<seed>\d+))?_r(?P<round>\d+)"
    rf"|(?:(?P<source>[a-z]+)_to_)?(?P<domain>[a-z]+)_(?:(?P<scratch>scratch)|(?P<size>{_SIZE})))$"
)


def size_label(size: int) -> str:
    """The paper's way of writing sizes: 2500 → '2.5k', 20000 → '20k', 0 → '0k'; small sizes as they are."""
    if size == 0:
        return "0k"
    if size >= 1000 and size % 100 == 0:
        return f"{size / 1000:g}k"
    return str(size)


def parse_size(label: str) -> int:
    """Inverse of `size_label`."""
    return round(float(label[:-1]) * 1000) if label.endswith("k") else int(label)


def sft_name(domain: str) -> str:
    return f"sft_{domain}"


def truth_name(domain: str) -> str:
    return f"{domain}_scratch"


def general_name(domain: str, size: int) -> str:
    return f"{domain}_{size_label(size)}"


def cross_name(domain: str, source: str, size: int) -> str:
    return f"{source}_to_{domain}_{size_label(size)}"


def active_learning_name(domain: str, strategy: str, round_index: int, seed: int | None = None) -> str:
    """Round k of a strategy's chain on a domain (`seed`: one of several seeds' chains; None: the run's one chain)."""
    chain = strategy if seed is None else f"{strategy}_s{seed}"
    return f"active_learning_{domain}_{chain}_r{round_index}"


def merge_sft_name(domain: str) -> str:
    """The general RM interpolated toward the SFT model of `domain` (the DogeRM baseline)."""
    return f"{domain}_merge_sft"


def on_domain(name: str, model_domain: str, target: str) -> str:
    """The evaluation name of model `name` (of `model_domain`) on `target`: the name itself on its own domain."""
    return name if target == model_domain else f"{name}_on_{target}"


def benchmark_name(name: str, benchmark: str) -> str:
    return f"{name}_{benchmark}"


def best_of_n_name(name: str) -> str:
    return f"{name}{BEST_OF_N_SUFFIX}"


@dataclass(frozen=True)
class Cell:
    """What a result name means: the target domain, the starting model and how much data it saw."""

    domain: str
    kind: str  # truth | finetune | cross | al (active learning) | merge_sft (source: whose SFT model, no pairs)
    size: int | None = None
    source: str | None = None
    strategy: str | None = None
    round_index: int | None = None
    seed: int | None = None  # active learning run with several seeds: which chain (None: the run's one chain)


def parse_name(name: str) -> Cell | None:
    """The table cell a model/eval name stands for, or None for names outside the convention."""
    match = _NAME.match(name)
    if match is None:
        return None
    parts = match.groupdict()
    if parts["al_domain"]:
        return Cell(parts["al_domain"], "al", strategy=parts["strategy"], round_index=int(parts["round"]),
                    seed=int(parts["seed"]) if parts["seed"] else None)
    domain = parts["domain"]
    if parts["scratch"]:
        return None if parts["source"] else Cell(domain, "truth")
    size = parse_size(parts["size"])
    if parts["source"]:
        return Cell(domain, "cross", size=size, source=parts["source"])
    return Cell(domain, "finetune", size=size)


def data_dir(run: Path, domain: str) -> Path:
    return Path(run) / "data" / f"pref-data-{domain}"


def candidates_dir(run: Path, domain: str) -> Path:
    return data_dir(run, domain) / "candidates"


def model_dir(run: Path, name: str) -> Path:
    return Path(run) / "models" / name


def merged_dir(run: Path, name: str) -> Path:
    return Path(run) / "models" / f"{name}-merged"


def eval_dir(run: Path, name: str) -> Path:
    return Path(run) / "eval" / name


def al_state_dir(run: Path, domain: str, strategy: str, round_index: int, seed: int | None = None) -> Path:
    chain = Path(run) / "active_learning" / domain / strategy
    return (chain if seed is None else chain / f"seed{seed}") / f"state_r{round_index}"


def original_state_dir(run: Path, domain: str) -> Path:
    """The original code's one active-learning state of a domain (each round reads and rewrites it)."""
    return Path(run) / "active_learning" / domain / "state"


# `${layout:<kind>,<name>}` in a config: the path of that output under the config's `paths.root`, so the YAML files
# name outputs through this module instead of spelling the layout out a second time.
CONFIG_PATHS = {"data": data_dir, "candidates": candidates_dir, "model": model_dir, "merged": merged_dir,
                "eval": eval_dir, "al_state": original_state_dir}


def config_path(kind: str, name: str, _root_: Any) -> str:
    """The `layout` resolver of every config schema (registered in `reward_transfer.config`)."""
    if kind not in CONFIG_PATHS:
        raise ValueError(f"layout: unknown kind '{kind}' (known: {', '.join(CONFIG_PATHS)})")
    if name in (None, "None", "???"):
        raise ValueError(f"layout:{kind} needs a name; set the key it is made from (e.g. domain=math)")
    return str(CONFIG_PATHS[kind](Path(_root_.paths.root), name))


def grid_file(run: Path) -> Path:
    return Path(run) / "grid.json"


def read_grid(run: Path) -> dict:
    """The sizes the run was planned with ({} for a folder that has no grid.json, e.g. a hand-made one)."""
    path = grid_file(run)
    return json.loads(path.read_text()) if path.exists() else {}
