"""Problems to sample: loaded through `reward_transfer.data`, filtered, given ids, seeds, prompts and a split."""

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import datasets

from reward_transfer.data import load_datasets
from reward_transfer.domains import get_domain, resolve_columns
from reward_transfer.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Problem:
    """One problem: raw text (the output `problem` column), the prompt sent to the model, and its reference."""

    problem_id: str
    problem: str
    prompt: str
    reference: Any  # the domain's: math the answer (LaTeX); code {"inputs", "outputs", "fn_name"?}; mcq {"answer", ...}
    seed: int
    split: str


def stable_hash(*parts: object, length: int = 16) -> str:
    """A hex digest of `parts` that is the same on every machine and Python run."""
    payload = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:length]


def in_sft_share(problem_id: str, seed: int, share: float) -> bool:
    """Whether a problem belongs to its domain's SFT share (`dataset.sft_share`): a seeded hash rank, so generation
    and SFT partition the same problems the same way on every machine and run."""
    return share > 0 and int(stable_hash("sft-share", seed, problem_id), 16) < share * 16**16


def problem_seed(seed: int, problem_id: str) -> int:
    """The sampling seed of one problem: independent of batch size, order and where a run resumed."""
    return int(stable_hash("sample", seed, problem_id), 16) % (2**31 - 1)


def resolve_path(path: str) -> str:
    """A path relative to the working directory, else to the repository (so configs work from anywhere).

    Anything found in neither place (a Hub name, a missing file) is returned unchanged for the caller to judge.
    """
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return str(candidate)
    in_repo = REPO_ROOT / candidate
    return str(in_repo) if in_repo.exists() else path


def read_template(path: str | None, key: str) -> str:
    """The text of a prompt template file named by config key `key`."""
    if path is None:
        return ""
    resolved = Path(resolve_path(path))
    if not resolved.is_file():
        raise UserError(f"{key}: template file {path} does not exist")
    return resolved.read_text(encoding="utf-8")


def split_order(problem_ids: list[str], seed: int) -> list[str]:
    """The seeded order in which problems join the eval split (a hash rank: the same on every machine and resume)."""
    return sorted(problem_ids, key=lambda pid: stable_hash("split", seed, pid))


def assign_splits(problem_ids: list[str], eval_count: int, seed: int) -> dict[str, str]:
    """Pick `eval_count` problems for the eval split by a seeded hash rank: no problem is in both splits."""
    held_out = set(split_order(problem_ids, seed)[:eval_count])
    return {pid: "eval" if pid in held_out else "train" for pid in problem_ids}


def assign_splits_by_pairs(pairs_per_problem: dict[str, int], eval_pairs: int, seed: int) -> dict[str, str]:
    """Problems join the eval split in `split_order` until it holds at least `eval_pairs` pairs; the rest train."""
    splits = dict.fromkeys(pairs_per_problem, "train")
    held = 0
    for pid in split_order(list(pairs_per_problem), seed):
        if held >= eval_pairs:
            break
        splits[pid] = "eval"
        held += pairs_per_problem[pid]
    if held < eval_pairs or "train" not in splits.values():
        total = sum(pairs_per_problem.values())
        raise UserError(f"dataset.eval_pairs={eval_pairs}: the data has only {total} pairs, which leaves no training "
                        "pairs; lower dataset.eval_pairs or use more problems")
    return splits


def eval_problem_count(dataset_cfg, num_problems: int) -> int:
    """`dataset.eval_size` when set (it wins), else `dataset.eval_fraction` of the problems (0 under eval_pairs,
    whose split is made after labelling)."""
    if dataset_cfg.eval_pairs is not None:
        return 0
    if dataset_cfg.eval_size is not None:
        count = dataset_cfg.eval_size
        key = f"dataset.eval_size={count}"
    else:
        fraction = dataset_cfg.eval_fraction or 0.0
        count = round(fraction * num_problems)
        key = f"dataset.eval_fraction={fraction}"
    if count >= num_problems and num_problems > 0:
        raise UserError(f"{key} leaves no training problems ({num_problems} problems after filtering)")
    return count


@dataclass(frozen=True)
class ProblemRow:
    """One usable problem of a dataset before it is split: id, text, prompt, reference, and its raw row."""

    problem_id: str
    text: str
    prompt: str
    reference: Any
    row: dict


def read_problem_rows(domain_name: str, data, prompt_cfg, seed: int, key: str = "dataset.ground_truth_type"
                      ) -> tuple[list[ProblemRow], Counter]:
    """The domain's usable problems of `data.datasets` (sampled, filtered by `data.keep`, deduplicated) and the
    counts of skipped rows by reason: the same problems and ids for generation and SFT."""
    domain = get_domain(domain_name, key)
    columns = resolve_columns(domain, data.columns)
    keep_roles = dict(getattr(data, "keep", None) or {})
    unknown = sorted(set(keep_roles) - set(columns))
    if unknown:
        raise UserError(f"dataset.keep: {', '.join(unknown)} is not a column role of domain {domain.name} "
                        f"(roles: {', '.join(columns)})")
    specs = [replace(spec, name_or_path=resolve_path(spec.name_or_path)) for spec in data.datasets]
    with quiet_datasets():
        table = load_datasets(specs, data.max_examples, seed,
                              required_columns=[columns[role] for role in (*domain.required, *keep_roles)])
    template = read_template(prompt_cfg.template, "prompt.template")
    keep = {columns[role]: set(values) for role, values in keep_roles.items()}

    skipped: Counter = Counter()
    seen: set[str] = set()
    rows = []
    for row in table:
        if any(row.get(column) not in allowed for column, allowed in keep.items()):
            skipped[f"{', '.join(keep_roles)} not kept (dataset.keep)"] += 1
            continue
        raw = row[columns["problem"]]
        if not isinstance(raw, str) or not raw.strip():
            skipped["empty problem text"] += 1
            continue
        text, reference, unusable = domain.read(row, columns)
        problem_id = stable_hash("problem", text if text is not None else raw)
        if problem_id in seen:
            skipped["duplicate problem text"] += 1
            continue
        if reference is None:
            skipped[unusable] += 1
            continue
        prompt = domain.extend_prompt(template.replace("{problem}", text).rstrip(), row, columns, prompt_cfg)
        seen.add(problem_id)
        rows.append(ProblemRow(problem_id, text, prompt, reference, row))
    return rows, skipped


def load_problems(cfg) -> tuple[list[Problem], Counter]:
    """Load, sample and filter the problems of `cfg.dataset`; returns them and the counts of skipped rows by reason.

    What a row means is the domain's (`reward_transfer.domains`): its columns, problem text, reference and prompt.
    """
    data = cfg.dataset
    read, skipped = read_problem_rows(data.ground_truth_type, data, cfg.prompt, cfg.seed)
    rows = [(r.problem_id, r.text, r.prompt, r.reference) for r in read]
    if rows:
        rows = get_domain(data.ground_truth_type).check_references(rows, cfg.verifier, skipped)
    reserved = [row for row in rows if in_sft_share(row[0], cfg.seed, data.sft_share)]
    if reserved:
        skipped["reserved for SFT (dataset.sft_share)"] += len(reserved)
        rows = [row for row in rows if not in_sft_share(row[0], cfg.seed, data.sft_share)]
    if not rows:
        reasons = ", ".join(f"{count} {reason}" for reason, count in skipped.items()) or "no rows"
        raise UserError(f"dataset.datasets: no usable problems left after sampling and filtering ({reasons})")
    splits = assign_splits([r[0] for r in rows], eval_problem_count(data, len(rows)), cfg.seed)
    problems = [Problem(pid, text, prompt, reference, problem_seed(cfg.seed, pid), splits[pid])
                for pid, text, prompt, reference in rows]
    return problems, skipped


@contextmanager
def quiet_datasets() -> Iterator[None]:
    """Hide the datasets library's own bars (the stage has its progress bar over problems), then restore them."""
    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()
