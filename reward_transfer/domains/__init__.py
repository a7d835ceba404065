"""The registry of domains: one module per domain, found by name, asked wherever the pipeline depends on one.

A domain module (e.g. `domains/math.py`) defines `DOMAIN = Domain(...)`: the dataset columns it reads (roles
with default column names, overridable by `dataset.columns`), how a row becomes a problem text and a reference,
its prompt, its verifier (the score of each candidate), the extra candidate columns, and how `eval.py` names
the level of a score in a pair kind. Pairs are made the same way for every domain (a candidate scoring strictly
higher than another), so a binary verifier gives correct-vs-incorrect pairs and a graded one pass-count pairs.
Adding a domain is one module here, its configs (`configs/*/demo_<name>.yaml`, ...) and its data.
"""

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from reward_transfer.errors import UserError

# One labelled candidate: (problem, candidate index, response) → {"score", "correct", ...extra columns}
Labeller = Callable[[list[tuple[Any, int, str]], Any], list[dict]]


@dataclass(frozen=True)
class Domain:
    """What the pipeline needs to know about one domain of problems."""

    name: str
    # role → default column of the raw problem dataset; `required` roles must exist, the others may not.
    columns: dict[str, str]
    required: tuple[str, ...]
    # (row, columns) → (problem text shown to models and reward models, reference, why unusable when None)
    read: Callable[[dict, dict[str, str]], tuple[str | None, Any, str]]
    label: Labeller
    candidate_features: dict[str, Any]  # datasets `Value`s of the extra candidate columns `label` returns
    level: Callable[[float], str]  # a score's name in eval's pair kinds: "correct" / "incorrect", "pass" / ...
    # (prompt so far, row, columns, prompt config) → the final prompt (e.g. code appends starter code)
    extend_prompt: Callable[[str, dict, dict[str, str], Any], str] = lambda prompt, row, columns, cfg: prompt
    # (rows of (problem_id, text, prompt, reference), verifier config, skip counter) → the rows kept
    check_references: Callable[[list[tuple], Any, Any], list[tuple]] = lambda rows, cfg, skipped: rows
    # (row, columns, reference) → the reference solutions supervised fine-tuning learns from (train_sft_model.py),
    # and the role of the column they come from
    solutions: Callable[[dict, dict[str, str], Any], list[str]] | None = None
    solution_role: str = "solution"


@cache
def registry() -> dict[str, Domain]:
    """Every domain module of this package, by name."""
    found = {}
    for module in pkgutil.iter_modules(__path__):
        domain = getattr(importlib.import_module(f"{__name__}.{module.name}"), "DOMAIN", None)
        if isinstance(domain, Domain):
            found[domain.name] = domain
    return dict(sorted(found.items()))


def known() -> list[str]:
    return list(registry())


def get_domain(name: str, key: str = "domain") -> Domain:
    """The registered domain `name`; an unknown one is a one-line error listing the known ones."""
    domains = registry()
    if name not in domains:
        raise UserError(f"{key}: unknown domain '{name}' (known: {', '.join(domains)})")
    return domains[name]


def resolve_columns(domain: Domain, overrides: dict[str, str] | None) -> dict[str, str]:
    """The domain's role → column mapping with `dataset.columns` applied (an unknown role is refused)."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(domain.columns))
    if unknown:
        raise UserError(f"dataset.columns: {', '.join(unknown)} is not a column role of domain {domain.name} "
                        f"(roles: {', '.join(domain.columns)})")
    return {**domain.columns, **overrides}


def binary_level(score: float) -> str:
    return "correct" if score >= 1.0 else "incorrect"
