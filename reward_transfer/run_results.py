"""What a run folder holds, read once for the report: every result and what it is (`RunResults`, `load_run`), the
paper's published numbers, and the facts the tables and the figures both read (sizes, rounds, strategies, labels).

Reads whatever a run folder holds (see `reward_transfer.run_layout`), so a partial run gives tables with "—" in
the cells it has not reached yet.
"""

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from reward_transfer import run_layout as layout
from reward_transfer.errors import UserError
from reward_transfer.seed_pooling import pool_seeds

log = logging.getLogger(__name__)

PAPER_RESULTS = Path(__file__).resolve().parent.parent / "data" / "paper_results.json"
MISSING = "—"
NOT_REACHED = "not reached"
MAIN_STRATEGY, BASELINE_STRATEGY = "margin", "random"
# Table 1's rows in the paper's order: (target domain, starting model).
TABLE1_ROWS = (("math", "general"), ("code", "general"), ("code", "math"), ("math", "code"))


@dataclass
class RunResults:
    """Everything a run folder holds that the report uses, keyed by result/model name, with what each result is."""

    run: Path
    accuracy: dict[str, dict] = field(default_factory=dict)
    best_of_n: dict[str, dict] = field(default_factory=dict)  # keyed by the model's result name
    benchmarks: dict[str, dict[str, dict]] = field(default_factory=dict)  # model → benchmark → its results
    log_history: dict[str, list[dict]] = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    cells: dict[str, layout.Cell] = field(default_factory=dict)
    unplaced: list[str] = field(default_factory=list)  # results found that no table has a place for
    _outcomes: dict[str, dict[str, float] | None] = field(default_factory=dict)

    def cell(self, name: str) -> layout.Cell | None:
        return self.cells.get(name)

    def find(self, domain: str, kind: str, size: int | None = None, source: str | None = None,
             strategy: str | None = None, round_index: int | None = None) -> str | None:
        """The name of the accuracy result that is this cell (None: not in the run)."""
        wanted = layout.Cell(domain, kind, size, source, strategy, round_index)
        return next((name for name in self.accuracy if self.cells.get(name) == wanted), None)

    def find_round(self, domain: str, strategy: str, round_index: int) -> str | None:
        """The accuracy result of an active-learning round (whatever number of pairs it holds; several seeds: their
        pooled result)."""
        return next((name for name, cell in self.cells.items() if name in self.accuracy and cell.kind == "al"
                     and cell.seed is None
                     and (cell.domain, cell.strategy, cell.round_index) == (domain, strategy, round_index)), None)

    def acc(self, name: str | None) -> float | None:
        """The judgment accuracy of result `name`; None when missing or undefined (NaN: no pairs)."""
        result = self.accuracy.get(name) if name else None
        value = None if result is None else float(result["accuracy"])
        return None if value is None or math.isnan(value) else value

    def interval(self, name: str | None) -> tuple[float, float] | None:
        result = self.accuracy.get(name) if name else None
        ci = result.get("ci95") if result else None
        return (float(ci[0]), float(ci[1])) if ci and not any(map(math.isnan, ci)) else None

    def pairs(self, name: str | None) -> int | None:
        result = self.accuracy.get(name) if name else None
        return result.get("num_pairs") if result else None

    def set_outcomes(self, name: str, outcomes: dict[str, float]) -> None:
        self._outcomes[name] = outcomes

    def outcomes(self, name: str | None) -> dict[str, float] | None:
        """Per evaluation pair, whether the model ranked it right (from the evaluation's scores.jsonl; a pooled
        result of several seeds: the share of seeds that did)."""
        if name is None or name not in self.accuracy:
            return None
        if name not in self._outcomes:
            path = self.run / "eval" / name / "scores.jsonl"
            rows = [json.loads(line) for line in path.read_text().splitlines() if line] if path.is_file() else None
            self._outcomes[name] = None if rows is None else {str(r["pair_id"]): r["chosen"] > r["rejected"]
                                                               for r in rows}
        return self._outcomes[name]


def read_json(path: Path) -> object | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        log.warning("skipping unreadable %s: %s", path, err)
        return None


def _cell_of(meta: dict) -> layout.Cell:
    return layout.Cell(meta["domain"], meta["kind"], meta.get("size"), meta.get("source"), meta.get("strategy"),
                       meta.get("round_index"), meta.get("seed"))


def load_run(run: str | Path) -> RunResults:
    """Collect the results of a run folder and what each one is.

    A folder written by reproduce.py or active_learning_loop.py says what each result is in grid.json; only a
    folder made by hand with the original code's commands (no such record) is read by the naming convention. A result
    neither places is listed under "not placed", never dropped.
    """
    run = Path(run)
    if not run.is_dir():
        raise UserError(f"run folder {run} does not exist")
    results = RunResults(run=run, grid=layout.read_grid(run))
    recorded = results.grid.get("results")
    placed: set[Path] = set()
    for name, meta in (recorded or {}).items():
        path = run / meta["results"]
        data = read_json(path) if path.is_file() else None
        if not isinstance(data, dict):
            continue
        placed.add(path.resolve())
        if data.get("benchmark"):
            results.benchmarks.setdefault(meta["model"], {})[data["benchmark"]] = data
            continue
        if meta.get("mode") == "best_of_n":
            results.best_of_n[meta["model"]] = data
        elif "accuracy" in data:
            results.accuracy[name] = data
        results.cells[meta["model"]] = _cell_of(meta)
    for path in sorted(run.glob("eval/*/results.json")):
        if path.resolve() in placed:
            continue
        name, data = path.parent.name, read_json(path)
        if not isinstance(data, dict):
            continue
        if data.get("benchmark"):  # by hand: named after the model it scored
            results.benchmarks.setdefault(str(data.get("model", name)), {})[data["benchmark"]] = data
            continue
        bon = data.get("mode") == "best_of_n"
        model = name.removesuffix(layout.BEST_OF_N_SUFFIX) if bon else name
        cell = None if recorded is not None else layout.parse_name(model)
        if cell is None:
            results.unplaced.append(name)
            continue
        results.cells[model] = cell
        (results.best_of_n if bon else results.accuracy)[model] = data
    if recorded is None:
        for model in [p.parent.name for p in run.glob("models/*/log_history.json")]:
            cell = layout.parse_name(model)
            if cell is not None:
                results.cells.setdefault(model, cell)
    for path in sorted(run.glob("models/*/log_history.json")):
        data = read_json(path)
        if isinstance(data, list):
            results.log_history[path.parent.name] = data
    pool_seeds(results)
    return results


def load_paper_results(path: Path = PAPER_RESULTS) -> dict:
    """The paper's published Tables 1 and 2 (data/paper_results.json)."""
    return json.loads(Path(path).read_text())


def run_domains(results: RunResults) -> list[str]:
    return list(results.grid.get("domains", layout.PAPER_DOMAINS))


def result_cells(results: RunResults) -> list[layout.Cell]:
    """What the run's accuracy results are."""
    return [results.cells[name] for name in results.accuracy if name in results.cells]


def table1_sizes(results: RunResults) -> list[int]:
    """Table 1's columns: 0 and the fine-tuning subset sizes (planned ones, else the ones found)."""
    planned = results.grid.get("sizes")
    if planned:
        return [0, *sorted(int(s) for s in planned)]
    return sorted({cell.size for cell in result_cells(results) if cell.kind in ("finetune", "cross")} | {0})


def full_size(results: RunResults, domain: str, sizes: Iterable[int]) -> int | None:
    """N_T: the full training size of the domain (planned, else the largest size seen)."""
    planned = results.grid.get("full_size", {}).get(domain)
    if planned:
        return int(planned)
    sizes = [s for s in sizes if s > 0]
    return max(sizes) if sizes else None


def row_result_name(results: RunResults, domain: str, start: str, size: int) -> str | None:
    """The result of Table 1's cell (target domain, starting model, fine-tuning size), None when not in the run."""
    if start == "general":
        return results.find(domain, "finetune", size=size)
    return results.find(domain, "cross", size=size, source=start)


def al_rounds(results: RunResults) -> list[int]:
    planned = results.grid.get("al", {}).get("rounds")
    if planned:
        return list(range(1, int(planned) + 1))
    return sorted({cell.round_index for cell in result_cells(results) if cell.kind == "al"})


def al_round_sizes(results: RunResults, rounds: list[int]) -> dict[int, int | None]:
    """Cumulative pairs after each round (None when the run folder doesn't say)."""
    per_round = results.grid.get("al", {}).get("pairs_per_round")
    return {k: (k * int(per_round) if per_round else None) for k in rounds}


def al_strategies(results: RunResults) -> list[str]:
    """The planned strategies (in the profile's order), then any other strategy found in the run."""
    planned = list(results.grid.get("al", {}).get("strategies", []))
    found = [c.strategy for c in result_cells(results) if c.kind == "al" and c.strategy]
    return list(dict.fromkeys([*planned, *sorted(found)]))


def transfer_name(results: RunResults, source: str, target: str, size: int) -> str | None:
    """The result of the ground-truth RM of `source` on `target` after `size` pairs of `target` (the diagonal:
    `target`'s own ground truth)."""
    if source == target:
        return results.find(target, "truth")
    return results.find(target, "cross", size=size, source=source)


def describe(results: RunResults, name: str) -> str:
    """A human-readable label of a result ('R_gen + 20k', 'AL margin, round 3', ...)."""
    cell = results.cells.get(name)
    if cell is None:
        return "R_gen (untouched)" if name == "general" else name
    if cell.kind == "merge_sft":
        return f"R_gen ⊕ SFT_{cell.source} (no pairs)"
    if cell.kind == "truth":
        return "R_truth"
    if cell.kind == "finetune":
        return "R_gen" if cell.size == 0 else f"R_gen + {layout.size_label(cell.size)}"
    if cell.kind == "cross":
        start = f"R_{cell.source}"
        return start if cell.size == 0 else f"{start} + {layout.size_label(cell.size)}"
    chain = f", seed {cell.seed}" if cell.seed is not None else ""
    return f"AL {cell.strategy}, round {cell.round_index}{chain}"


def sort_key(results: RunResults, name: str) -> tuple:
    cell = results.cells.get(name)
    if cell is None:
        return (9, name)
    kinds = {"truth": 0, "finetune": 1, "cross": 2, "al": 3, "merge_sft": 4}
    domains = run_domains(results)
    domain = domains.index(cell.domain) if cell.domain in domains else 9
    return (domain, kinds.get(cell.kind, 9), cell.strategy or "", cell.size or cell.round_index or 0, name)


def seeds_text(results: RunResults, names: Iterable[str | None]) -> str:
    """' (3 seeds)' for a row of pooled rounds; ' (2–3 seeds)' while some seeds' chains have not reached a round."""
    counts = sorted({len(results.accuracy[n]["seeds"]) for n in names if n and "seeds" in results.accuracy[n]})
    if not counts:
        return ""
    return f" ({counts[0]} seeds)" if len(counts) == 1 else f" ({counts[0]}–{counts[-1]} seeds)"


def published_row(paper: dict | None, table: str, **keys: str) -> dict | None:
    if paper is None:
        return None
    return next((row for row in paper[table] if all(row[k] == v for k, v in keys.items())), None)


def paper_by_position(paper_values: dict[str, float], ours: list[int]) -> dict[int, float]:
    """Pair our columns with the paper's: by size when they match, else by position (a scaled-down run)."""
    paper_sizes = sorted(int(s) for s in paper_values)
    if set(ours) <= set(paper_sizes) or len(ours) != len(paper_sizes):
        return {s: paper_values[str(s)] for s in ours if str(s) in paper_values}
    return {mine: paper_values[str(theirs)] for mine, theirs in zip(ours, paper_sizes, strict=True)}


def column_mapping(paper_values: dict[str, float], ours: list[int]) -> str:
    """How our columns pair with the paper's, e.g. '40 ↔ 20k, 80 ↔ 40k' (empty when they are the same sizes)."""
    paper_sizes = sorted(int(s) for s in paper_values)
    if set(ours) <= set(paper_sizes) or len(ours) != len(paper_sizes):
        return ""
    return ", ".join(f"{layout.size_label(m)} ↔ {layout.size_label(p)}" for m, p in zip(ours, paper_sizes, strict=True)
                     if m != p)


def start_label(start: str) -> str:
    return "R_gen" if start == "general" else f"R_{start}"
