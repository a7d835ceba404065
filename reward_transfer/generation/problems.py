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
from reward_transfer.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Problem:
    """One problem: raw text (the output `problem` column), the prompt sent to the model, and its reference."""

    problem_id: str
    problem: str
    prompt: str
    reference: Any  # math: the reference answer (LaTeX); code: {"inputs", "outputs", optional "fn_name"}
    seed: int
    split: str


def stable_hash(*parts: object, length: int = 16) -> str:
    """A hex digest of `parts` that is the same on every machine and Python run."""
    payload = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:length]


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


def parse_tests(raw: Any) -> dict | None:
    """APPS `input_output` (a JSON string or an already parsed dict) → tests, or None when unusable."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            return None
    if not isinstance(raw, dict):
        return None
    inputs, outputs = raw.get("inputs"), raw.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list) or not inputs or len(inputs) != len(outputs):
        return None
    tests = {"inputs": inputs, "outputs": outputs}
    if raw.get("fn_name"):
        if not isinstance(raw["fn_name"], str):
            return None
        tests["fn_name"] = raw["fn_name"]
    return tests


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


def load_problems(cfg) -> tuple[list[Problem], Counter]:
    """Load, sample and filter the problems of `cfg.dataset`; returns them and the counts of skipped rows by reason."""
    data = cfg.dataset
    domain = data.ground_truth_type
    problem_column = data.problem_column or ("problem" if domain == "math" else "question")
    columns = [problem_column] + ([data.solution_column] if domain == "math" else [data.tests_column])
    specs = [replace(spec, name_or_path=resolve_path(spec.name_or_path)) for spec in data.datasets]
    with quiet_datasets():
        table = load_datasets(specs, data.max_examples, cfg.seed, required_columns=columns)
    template = read_template(cfg.prompt.template, "prompt.template")
    starter_template = read_template(cfg.prompt.starter_code_template, "prompt.starter_code_template")
    has_starter = data.starter_code_column is not None and data.starter_code_column in table.column_names

    skipped: Counter = Counter()
    seen: set[str] = set()
    rows = []
    for row in table:
        text = row[problem_column]
        if not isinstance(text, str) or not text.strip():
            skipped["empty problem text"] += 1
            continue
        problem_id = stable_hash("problem", text)
        if problem_id in seen:
            skipped["duplicate problem text"] += 1
            continue
        if domain == "math":
            reference, unusable = _math_reference(text, row[data.solution_column], data.require_boxed_answer)
        else:
            reference = parse_tests(row[data.tests_column])
            unusable = f"{data.tests_column} is not valid JSON with test cases"
        if reference is None:
            skipped[unusable] += 1
            continue
        prompt = template.replace("{problem}", text).rstrip()
        starter = row[data.starter_code_column] if has_starter and domain == "code" else None
        if starter and starter.strip() and starter_template:
            prompt += starter_template.replace("{starter_code}", starter).rstrip()
        seen.add(problem_id)
        rows.append((problem_id, text, prompt, reference))
    if domain == "math" and data.require_boxed_answer:
        rows = _drop_unparsed_references(rows, cfg.verifier, skipped)

    if not rows:
        reasons = ", ".join(f"{count} {reason}" for reason, count in skipped.items()) or "no rows"
        raise UserError(f"dataset.datasets: no usable problems left after sampling and filtering ({reasons})")
    splits = assign_splits([r[0] for r in rows], eval_problem_count(data, len(rows)), cfg.seed)
    problems = [Problem(pid, text, prompt, reference, problem_seed(cfg.seed, pid), splits[pid])
                for pid, text, prompt, reference in rows]
    return problems, skipped


def _math_reference(problem: str, solution: Any, require_boxed: bool) -> tuple[str | None, str]:
    """The reference answer of a math problem and, when there is none to compare with, why."""
    from reward_transfer.verifiers.math import extract_answer, reference_problem

    if not isinstance(solution, str):
        return None, "solution is not text"
    answer = extract_answer(solution)
    if answer is None or not str(answer).strip():
        return (None, "reference has no \\boxed{} answer") if require_boxed else (solution, "")
    reason = reference_problem(problem, answer) if require_boxed else None
    return (None, reason) if reason else (answer, "")


def _drop_unparsed_references(rows: list[tuple], verifier_cfg, skipped: Counter) -> list[tuple]:
    """Keep the problems whose reference answer parses to a value (checked in the verifier's workers)."""
    from reward_transfer.verifiers.math import references_parse

    parsed = references_parse([row[3] for row in rows], verifier_cfg.math_timeout_s, verifier_cfg.workers)
    skipped["answer does not parse"] += parsed.count(False)
    if not skipped["answer does not parse"]:
        del skipped["answer does not parse"]
    return [row for row, ok in zip(rows, parsed, strict=True) if ok]


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
