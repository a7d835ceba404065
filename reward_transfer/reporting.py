"""The report of a reproduction run: Tables 1 and 2, transferability S_T, best-of-n, and the figures.

Reads whatever a run folder holds (see `reward_transfer.run_layout`), so a partial run gives tables with
"—" in the cells it has not reached yet. `--paper` puts the published numbers beside ours.
"""

import json
import logging
import math
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from reward_transfer import run_layout as layout
from reward_transfer.benchmark_report import NOTE as BENCHMARK_NOTE
from reward_transfer.benchmark_report import PARTS_NOTE as BENCHMARK_PARTS_NOTE
from reward_transfer.benchmark_report import benchmark_part_rows, benchmark_rows
from reward_transfer.errors import UserError
from reward_transfer.seed_pooling import pool_seeds, sign_flip_p

log = logging.getLogger(__name__)

PAPER_RESULTS = Path(__file__).resolve().parent.parent / "data" / "paper_results.json"
MISSING = "—"
NOT_REACHED = "not reached"
MAIN_STRATEGY, BASELINE_STRATEGY = "margin", "random"
# Table 1's rows in the paper's order: (target domain, starting model).
TABLE1_ROWS = (("math", "general"), ("code", "general"), ("code", "math"), ("math", "code"))
# Best-of-n results.json: our column title → the keys the evaluation may use for it, first found wins.
BEST_OF_N_COLUMNS = {
    "RM's pick correct": ("best_of_n_accuracy", "accuracy"),
    "one sample (expected)": ("random_pick_accuracy",),
    "any candidate correct": ("oracle_accuracy",),
}


# ---------------------------------------------------------------------------------------------- reading
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


def _read_json(path: Path) -> object | None:
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
    folder made by hand with the seed's commands (no such record) is read by the naming convention. A result
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
        data = _read_json(path) if path.is_file() else None
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
        name, data = path.parent.name, _read_json(path)
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
        data = _read_json(path)
        if isinstance(data, list):
            results.log_history[path.parent.name] = data
    pool_seeds(results)
    return results


def load_paper_results(path: Path = PAPER_RESULTS) -> dict:
    """The paper's published Tables 1 and 2 (data/paper_results.json)."""
    return json.loads(Path(path).read_text())


# ------------------------------------------------------------------------------------------- the numbers
def _domains(results: RunResults) -> list[str]:
    return list(results.grid.get("domains", layout.PAPER_DOMAINS))


def _cells(results: RunResults) -> list[layout.Cell]:
    """What the run's accuracy results are."""
    return [results.cells[name] for name in results.accuracy if name in results.cells]


def table1_sizes(results: RunResults) -> list[int]:
    """Table 1's columns: 0 and the fine-tuning subset sizes (planned ones, else the ones found)."""
    planned = results.grid.get("sizes")
    if planned:
        return [0, *sorted(int(s) for s in planned)]
    return sorted({cell.size for cell in _cells(results) if cell.kind in ("finetune", "cross")} | {0})


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


@dataclass
class Transferability:
    """S_T = 1 − N_F/N_T for the smallest size N_F whose accuracy reaches R_truth."""

    value: float | None
    text: str


def first_reaching(truth: float, values: dict[int, float | None]) -> tuple[int | None, bool]:
    """The smallest size whose accuracy reaches `truth` (None: none does), and whether a smaller size is missing."""
    smaller_missing = False
    for size in sorted(values):
        if values[size] is None:
            smaller_missing = True
        elif values[size] >= truth:
            return size, smaller_missing
    return None, smaller_missing


def transferability(truth: float | None, values: dict[int, float | None], full: int | None) -> Transferability:
    """S_T of one row. '≥' marks a lower bound (a smaller size is still missing); '—' when unknown."""
    present = {size: v for size, v in values.items() if v is not None}
    if truth is None or full is None or not present:
        return Transferability(None, MISSING)
    size, smaller_missing = first_reaching(truth, values)
    if size is not None:
        score = 1 - size / full
        return Transferability(score, f"≥{score:.4f}" if smaller_missing else f"{score:.4f}")
    return Transferability(None, NOT_REACHED if len(present) == len(values) else f"{NOT_REACHED} (so far)")


def labels_to_reach(truth: float | None, values: dict[int, float | None]) -> str:
    """The labels (pairs selected so far) a row needs to reach R_truth's accuracy: '≤' when a smaller size is
    missing, 'not reached' when no size reaches it."""
    if truth is None or all(v is None for v in values.values()):
        return MISSING
    size, smaller_missing = first_reaching(truth, values)
    if size is None:
        return NOT_REACHED if all(v is not None for v in values.values()) else f"{NOT_REACHED} (so far)"
    return f"{'≤' if smaller_missing else ''}{layout.size_label(size)}"


# -------------------------------------------------------------------------------------------- the tables
@dataclass
class TableCell:
    text: str
    bold: bool = False


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[TableCell]]
    note: str = ""


def _fmt(value: float | None) -> str:
    return MISSING if value is None else f"{value:.4f}"


def _fmt_result(results: RunResults, name: str | None, paper: float | None = None, with_paper: bool = False) -> str:
    """`0.8100 (0.76–0.86)`: accuracy and its 95% interval; `; paper 0.8909, −0.0809` beside it with --paper."""
    value, interval = results.acc(name), results.interval(name)
    text = _fmt(value)
    if value is not None and interval is not None:
        text += f" ({interval[0]:.2f}–{interval[1]:.2f})"
    if with_paper and paper is not None:
        if value is None:
            return f"{MISSING}; paper {paper:.4f}"
        diff = value - paper
        text += f"; paper {paper:.4f}, {'+' if diff >= 0 else '−'}{abs(diff):.4f}"
    return text


def separated_best(results: RunResults, names: list[str | None]) -> list[bool]:
    """Bold marks: the best result only when its 95% interval lies above every other result's interval."""
    scored = [(i, results.acc(n), results.interval(n)) for i, n in enumerate(names) if results.acc(n) is not None]
    if len(scored) < 2:
        return [False] * len(names)
    best = max(scored, key=lambda item: item[1])
    low = best[2][0] if best[2] else best[1]
    others_high = [(ci[1] if ci else value) for i, value, ci in scored if i != best[0]]
    marks = [False] * len(names)
    marks[best[0]] = all(low > high for high in others_high)
    return marks


def _pairs_text(results: RunResults, names: list[str | None]) -> str:
    counts = sorted({results.pairs(n) for n in names if results.pairs(n) is not None})
    return "/".join(map(str, counts)) if counts else MISSING


def _paper_row(paper: dict | None, table: str, **keys: str) -> dict | None:
    if paper is None:
        return None
    return next((row for row in paper[table] if all(row[k] == v for k, v in keys.items())), None)


def _paper_by_position(paper_values: dict[str, float], ours: list[int]) -> dict[int, float]:
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


def _paper_transferability(paper: dict, paper_row: dict, key: str, domain: str) -> str:
    """S_T of a row of the paper's tables, computed the same way as ours."""
    values = {int(size): value for size, value in paper_row[key].items()}
    return transferability(paper_row["truth"], values, int(paper["full_size"][domain])).text


def _start_label(start: str) -> str:
    return "R_gen" if start == "general" else f"R_{start}"


def _aligned(results: RunResults, names: list[str | None]) -> tuple[list[str], list[list[bool]]] | None:
    """Per-pair outcomes of several results on the evaluation pairs they share (None: some have no scores)."""
    outcomes = [results.outcomes(n) for n in names]
    if any(o is None for o in outcomes):
        return None
    shared = sorted(set.intersection(*(set(o) for o in outcomes)))
    return (shared, [[o[pid] for pid in shared] for o in outcomes]) if shared else None


def transferability_interval(results: RunResults, truth: str | None, by_size: dict[int, str | None],
                             full: int | None, samples: int = 1000, seed: int = 0) -> str:
    """95% interval of S_T by a paired bootstrap over the shared evaluation pairs (each resample recomputes every
    accuracy of the row and R_truth on the same pairs); '' when per-pair scores are missing."""
    import numpy as np

    sizes = [s for s, n in sorted(by_size.items()) if n is not None]
    if truth is None or full is None or not sizes:
        return ""
    aligned = _aligned(results, [truth, *(by_size[s] for s in sizes)])
    if aligned is None:
        return ""
    matrix = np.asarray(aligned[1], dtype=np.float64)  # rows: truth, then each size
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, matrix.shape[1], size=(samples, matrix.shape[1]))
    means = matrix[:, draws].mean(axis=2)  # (rows, samples)
    reached = means[1:] >= means[0]
    first = np.where(reached.any(axis=0), reached.argmax(axis=0), -1)
    not_reached = -1.0  # below every S_T (S_T ≥ 0 once reached)
    values = np.where(first >= 0, 1 - np.asarray(sizes, dtype=np.float64)[np.maximum(first, 0)] / full, not_reached)
    low, high = np.percentile(values, [2.5, 97.5], method="lower")

    def text(v: float) -> str:
        return "not reached" if v == not_reached else f"{v:.2f}"

    return f"95%: {text(low)}–{text(high)}"


def merge_sft_rows(results: RunResults, domains: list[str], sizes: list[int]) -> list[list[TableCell]]:
    """Table 1's baseline rows: the general RM interpolated toward the domain's SFT model, at 0 pairs."""
    rows = []
    for domain in domains:
        merged = results.find(domain, "merge_sft", size=0, source=domain)
        if merged is None:
            continue
        truth = results.find(domain, "truth")
        truth_acc, merged_acc = results.acc(truth), results.acc(merged)
        reached = MISSING if truth_acc is None or merged_acc is None else (
            "1.00 (R_truth without pairs)" if merged_acc >= truth_acc else "not reached without pairs")
        rows.append([TableCell(domain), TableCell(f"R_gen ⊕ SFT_{domain}"), TableCell(_pairs_text(results, [truth,
                     merged])), TableCell(_fmt_result(results, truth))]
                    + [TableCell(_fmt_result(results, merged) if size == 0 else "") for size in sizes]
                    + [TableCell(reached)])
    return rows


def build_table1(results: RunResults, paper: dict | None = None) -> Table:
    """Table 1: R_truth, then accuracy after fine-tuning on 0 … N pairs, and S_T, per (domain, start)."""
    sizes = table1_sizes(results)
    domains = _domains(results)
    header = ["domain", "start", "eval pairs", "R_truth", *(layout.size_label(s) for s in sizes), "S_T"]
    rows, mapping = [], ""
    for domain, start in TABLE1_ROWS:
        if domain not in domains or (start != "general" and start not in domains):
            continue
        truth = results.find(domain, "truth")
        names = {s: row_result_name(results, domain, start, s) for s in sizes}
        paper_row = _paper_row(paper, "table1", domain=domain, start=start)
        paper_values = _paper_by_position(paper_row["by_size"], sizes) if paper_row else {}
        mapping = mapping or (column_mapping(paper_row["by_size"], sizes) if paper_row else "")
        texts = [_fmt_result(results, truth, paper_row["truth"] if paper_row else None, paper is not None)]
        texts += [_fmt_result(results, names[s], paper_values.get(s), paper is not None) for s in sizes]
        values = {s: results.acc(n) for s, n in names.items()}
        full = full_size(results, domain, sizes)
        s_t = transferability(results.acc(truth), values, full)
        spread = transferability_interval(results, truth, names, full)
        s_t_text = f"{s_t.text} ({spread})" if spread and s_t.text != MISSING else s_t.text
        if paper_row:
            s_t_text += f"; paper {_paper_transferability(paper, paper_row, 'by_size', domain)}"
        row = [TableCell(domain), TableCell(_start_label(start)),
               TableCell(_pairs_text(results, [truth, *names.values()]))]
        row += [TableCell(t, b) for t, b in zip(texts, separated_best(results, [truth, *names.values()]),
                                               strict=True)]
        row.append(TableCell(s_t_text))
        rows.append(row)
    rows += merge_sft_rows(results, domains, sizes)
    note = (
        "Judgment accuracy S_JA on the domain's evaluation pairs, with its 95% bootstrap interval. Columns: "
        "fine-tuning pairs (0 = the starting model untouched). Bold: the best of the row, only when its interval "
        "lies above every other one. S_T = 1 − N_F/N_T for the smallest N_F reaching R_truth (≥: a smaller size "
        f"is missing), with its 95% interval from a paired bootstrap of the evaluation pairs. {MISSING}: not in "
        "this run (yet). R_gen ⊕ SFT (DogeRM, beyond the paper): the general RM's backbone interpolated toward the "
        "domain's SFT model, no preference pairs (its 0 column)."
    )
    if mapping:
        note += f" Paper columns paired by position: {mapping}."
    return Table("Table 1: fine-tuning the general RM and cross-domain RMs", header, rows, note)


def al_rounds(results: RunResults) -> list[int]:
    planned = results.grid.get("al", {}).get("rounds")
    if planned:
        return list(range(1, int(planned) + 1))
    return sorted({cell.round_index for cell in _cells(results) if cell.kind == "al"})


def al_round_sizes(results: RunResults, rounds: list[int]) -> dict[int, int | None]:
    """Cumulative pairs after each round (None when the run folder doesn't say)."""
    per_round = results.grid.get("al", {}).get("pairs_per_round")
    return {k: (k * int(per_round) if per_round else None) for k in rounds}


def al_strategies(results: RunResults) -> list[str]:
    """The planned strategies (in the profile's order), then any other strategy found in the run."""
    planned = list(results.grid.get("al", {}).get("strategies", []))
    found = [c.strategy for c in _cells(results) if c.kind == "al" and c.strategy]
    return list(dict.fromkeys([*planned, *sorted(found)]))


def build_table2(results: RunResults, paper: dict | None = None) -> Table:
    """Table 2: active learning per strategy and round beside R_truth and one fine-tune on as many random pairs."""
    rounds = al_rounds(results)
    cumulative = al_round_sizes(results, rounds)
    sizes = [cumulative[k] or 0 for k in rounds]
    labels = [layout.size_label(cumulative[k]) if cumulative[k] else f"round {k}" for k in rounds]
    header = ["domain", "selection", "eval pairs", "R_truth", *labels, "S_T", "labels to R_truth"]
    rows, mapping = [], ""
    for domain in _domains(results):
        truth = results.find(domain, "truth")
        paper_row = _paper_row(paper, "table2", domain=domain)
        mapping = mapping or (column_mapping(paper_row["active"], sizes) if paper_row else "")
        full = full_size(results, domain, [])
        block: list[tuple[str, dict[int, str | None], dict[int, float]]] = []
        for strategy in al_strategies(results):
            names = {k: results.find_round(domain, strategy, k) for k in rounds}
            key = {MAIN_STRATEGY: "active", BASELINE_STRATEGY: "random"}.get(strategy)
            published = _paper_by_position(paper_row[key], sizes) if paper_row and key else {}
            label = f"AL {strategy}" if strategy != BASELINE_STRATEGY else "random (AL loop)"
            block.append((label + _seeds_text(results, names.values()), names,
                          {k: published.get(sizes[i]) for i, k in enumerate(rounds)}))
        one_shot = {k: results.find(domain, "finetune", size=cumulative[k]) if cumulative[k] else None for k in rounds}
        if any(n is not None for n in one_shot.values()):
            block.append(("random pairs, one fine-tune", one_shot, {}))
        all_names = [truth, *(n for _, names, _ in block for n in names.values())]
        marks = iter(separated_best(results, all_names))
        truth_mark = next(marks)
        for index, (label, names, published) in enumerate(block):
            paper_truth = paper_row["truth"] if paper_row else None
            row = [TableCell(domain), TableCell(label), TableCell(_pairs_text(results, [truth, *names.values()])),
                   TableCell(_fmt_result(results, truth, paper_truth, paper is not None), truth_mark and index == 0)
                   if index == 0 else TableCell("")]
            row += [TableCell(_fmt_result(results, names[k], published.get(k), paper is not None), next(marks))
                    for k in rounds]
            values = {cumulative[k] or 0: results.acc(names[k]) for k in rounds}
            s_t = transferability(results.acc(truth), values, full)
            spread = transferability_interval(results, truth, {cumulative[k] or 0: names[k] for k in rounds}, full)
            row.append(TableCell(f"{s_t.text} ({spread})" if spread and s_t.text != MISSING else s_t.text))
            row.append(TableCell(labels_to_reach(results.acc(truth), values)))
            rows.append(row)
    note = (
        "Judgment accuracy (95% interval) after each active-learning round, columns = pairs selected so far, one "
        "row per selection strategy run in the same loop; 'random pairs, one fine-tune': the general RM "
        "fine-tuned once on that many random pairs (the paper's <domain>_2.5k/5k/7.5k runs). A strategy run with "
        "several seeds (profile.active_learning.seeds) shows its mean over the seeds' chains, the interval from a "
        "bootstrap over seeds and evaluation pairs. Labels to R_truth: the pairs selected when the accuracy first "
        "reaches R_truth's. Bold only when the interval separates the best from every other cell of the domain; "
        "the paired tests below say whether a strategy beats random."
    )
    if mapping:
        note += f" Paper columns paired by position: {mapping}."
    return Table("Table 2: active learning vs random selection", header, rows, note)


def _seeds_text(results: RunResults, names: Iterable[str | None]) -> str:
    seeds = next((results.accuracy[n]["seeds"] for n in names if n and "seeds" in results.accuracy[n]), None)
    return f" ({len(seeds)} seeds)" if seeds else ""


def transfer_name(results: RunResults, source: str, target: str, size: int) -> str | None:
    """The result of the ground-truth RM of `source` on `target` after `size` pairs of `target` (the diagonal:
    `target`'s own ground truth)."""
    if source == target:
        return results.find(target, "truth")
    return results.find(target, "cross", size=size, source=source)


def build_transfer_matrix(results: RunResults) -> Table:
    """Every source RM on every target domain, at 0k and after the largest fine-tuning size, and the asymmetry."""
    domains = _domains(results)
    largest = max(table1_sizes(results))
    columns = [0] + ([largest] if largest else [])
    header = ["source RM", *(f"on {d}, {layout.size_label(s)}" for d in domains for s in columns)]
    rows = [[TableCell(f"R_{source}")] + [TableCell(_fmt_result(results, transfer_name(results, source, target, s)))
                                          for target in domains for s in columns] for source in domains]
    rows += [[TableCell(f"R_gen ⊕ SFT_{source}")]
             + [TableCell(_fmt_result(results, results.find(target, "merge_sft", size=0, source=source)) if s == 0
                          else "") for target in domains for s in columns]
             for source in domains if any(results.find(t, "merge_sft", size=0, source=source) for t in domains)]
    for i, first in enumerate(domains):
        for second in domains[i + 1:]:
            row = [TableCell(f"asymmetry {first}→{second} − {second}→{first}")]
            for target in domains:
                for size in columns:
                    if target != second:
                        row.append(TableCell(""))
                        continue
                    there = results.acc(transfer_name(results, first, second, size))
                    back = results.acc(transfer_name(results, second, first, size))
                    row.append(TableCell(MISSING if there is None or back is None else
                                         f"{'+' if there >= back else '−'}{abs(there - back):.4f}"))
            rows.append(row)
    note = ("The ground-truth RM of each source domain evaluated on each target domain, untouched (0k) and after "
            "fine-tuning on the target's largest subset; the diagonal is each domain's own R_truth. Asymmetry: "
            "accuracy of first→second (under 'on second') minus second→first at the same size: transfer is "
            "symmetric when it is near 0. See transfer_matrix.png.")
    return Table("Transfer matrix: source RM × target domain", header, rows, note)


def plot_transfer_matrix(results: RunResults, out: Path) -> Path | None:
    """Heat maps of the transfer matrix (rows: source RM, columns: target domain) at 0k and the largest size."""
    import numpy as np

    domains = _domains(results)
    largest = max(table1_sizes(results))
    sizes = [0] + ([largest] if largest else [])
    grids = {s: np.array([[results.acc(transfer_name(results, a, b, s)) or np.nan for b in domains]
                          for a in domains], dtype=float) for s in sizes}
    if all(np.isnan(g).all() for g in grids.values()):
        return None
    fig, axes, plt = _figure(len(sizes), f"Transfer matrix: judgment accuracy{_label_suffix(results)}")
    for ax, size in zip(axes, sizes, strict=True):
        image = ax.imshow(grids[size], vmin=0.0, vmax=1.0, cmap="viridis")
        for (i, j), value in np.ndenumerate(grids[size]):
            ax.text(j, i, MISSING if np.isnan(value) else f"{value:.2f}", ha="center", va="center",
                    color="white" if not np.isnan(value) and value < 0.6 else "black")
        ax.set_xticks(range(len(domains)), domains)
        ax.set_yticks(range(len(domains)), [f"R_{d}" for d in domains])
        ax.set_xlabel("target domain (evaluated on)")
        ax.set_ylabel("source ground-truth RM")
        ax.set_title("untouched (0k)" if size == 0 else f"after {layout.size_label(size)} target pairs")
        fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, plt, out)


def mcnemar_p(first: list[bool], second: list[bool]) -> float:
    """Two-sided exact McNemar test of two models judged on the same pairs (the binomial test of the discordant
    pairs: only pairs exactly one model gets right say anything about which is better)."""
    only_first = sum(a and not b for a, b in zip(first, second, strict=True))
    only_second = sum(b and not a for a, b in zip(first, second, strict=True))
    n, k = only_first + only_second, min(only_first, only_second)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_p(first: list[float], second: list[float]) -> float:
    """McNemar's exact test for two models' right/wrong outcomes; the sign-flip test for shares of seeds."""
    if all(v in (0, 1) for v in (*first, *second)):
        return mcnemar_p([bool(v) for v in first], [bool(v) for v in second])
    return sign_flip_p(first, second)


def build_paired_tests(results: RunResults) -> Table:
    """Beyond the paper: AL vs random per round, and each fine-tune vs R_truth, on the same evaluation pairs."""
    comparisons: list[tuple[str, str, str, str]] = []  # (domain, label, A, B)
    rounds = al_rounds(results)
    strategies = al_strategies(results)
    for domain in _domains(results):
        for strategy in (s for s in strategies if s != BASELINE_STRATEGY):
            for k in rounds:
                ours = results.find_round(domain, strategy, k)
                baseline = results.find_round(domain, BASELINE_STRATEGY, k)
                if ours and baseline:
                    comparisons.append((domain, f"AL {strategy} vs random, round {k}", ours, baseline))
        truth = results.find(domain, "truth")
        for name in sorted(results.accuracy, key=lambda n: _sort_key(results, n)):
            cell = results.cells.get(name)
            if truth and cell and cell.domain == domain and cell.kind in ("finetune", "cross") and cell.size:
                comparisons.append((domain, f"{describe(results, name)} vs R_truth", name, truth))
    rows = []
    for domain, label, first, second in comparisons:
        aligned = _aligned(results, [first, second])
        if aligned is None:
            continue
        shared, (a, b) = aligned
        diff = (sum(a) - sum(b)) / len(shared)
        rows.append([TableCell(domain), TableCell(label), TableCell(str(len(shared))),
                     TableCell(f"{sum(a) / len(shared):.4f}"), TableCell(f"{sum(b) / len(shared):.4f}"),
                     TableCell(f"{'+' if diff >= 0 else '−'}{abs(diff):.4f}"), TableCell(f"{paired_p(a, b):.3g}")])
    note = ("Both models judged on the same evaluation pairs; p: two-sided exact McNemar test (a small p says the "
            "difference is unlikely to be noise on these pairs); a strategy run with several seeds: a paired "
            "sign-flip randomisation test on each pair's share of seeds that judged it right. Needs the evaluations' "
            "scores.jsonl.")
    return Table("Paired tests (beyond the paper)", ["domain", "comparison", "shared pairs", "A", "B", "A − B", "p"],
                 rows, note)


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


def _first_key(result: dict, keys: Iterable[str]) -> float | None:
    for key in keys:
        value = result.get(key)
        if isinstance(value, int | float):
            return float(value)
    return None


def build_best_of_n_table(results: RunResults) -> Table:
    """Share of evaluation problems whose top-scored candidate is correct, beside the baselines."""
    header = ["domain", "reward model", *BEST_OF_N_COLUMNS, "problems", "candidates per problem"]
    rows = []
    for name, result in sorted(results.best_of_n.items(), key=lambda item: _sort_key(results, item[0])):
        cell = results.cells.get(name)
        values = [_first_key(result, keys) for keys in BEST_OF_N_COLUMNS.values()]
        problems, per_problem = result.get("num_problems"), result.get("mean_candidates_per_problem")
        pick_ci = result.get("ci95")
        texts = [_fmt(v) for v in values]
        if values[0] is not None and pick_ci:
            texts[0] += f" ({pick_ci[0]:.2f}–{pick_ci[1]:.2f})"
        rows.append(
            [TableCell(cell.domain if cell else ""), TableCell(describe(results, name))]
            + [TableCell(text) for text in texts]
            + [TableCell(str(problems) if problems is not None else MISSING),
               TableCell(f"{per_problem:.1f}" if isinstance(per_problem, int | float) else MISSING)]
        )
    note = (
        "Best-of-n on the evaluation problems: each problem's saved candidates are ranked by the reward model. "
        "'RM's pick correct': share of problems whose top-ranked candidate is correct (math) / passes every test "
        "(code), with its 95% interval. 'one sample (expected)': the share of correct candidates, i.e. what one "
        "sample scores without a reward model. 'any candidate correct': the oracle, the ceiling of any reranker. "
        "The first candidate is not shown as a baseline: replayed candidates keep the order of the replay file, "
        "and the bundled math replay lists a correct answer first (its 'first sample' equals the oracle), so the "
        "first candidate is a random sample only under real sampling; 'one sample (expected)' is one in any case."
    )
    return Table("Best-of-n with the final reward models", header, rows, note)


def build_benchmark_table(results: RunResults) -> Table:
    """Each final model on the field's benchmarks (`benchmark_report.py`)."""
    return _benchmark_table(results, benchmark_rows, "The field's reward-model benchmarks", BENCHMARK_NOTE)


def build_benchmark_parts_table(results: RunResults) -> Table:
    """The same evaluations per section or subset of each benchmark."""
    return _benchmark_table(results, benchmark_part_rows, "The field's benchmarks per section and subset",
                            BENCHMARK_PARTS_NOTE)


def _benchmark_table(results: RunResults, rows_of: Callable, title: str, note: str) -> Table:
    header, rows = rows_of(results.benchmarks, lambda name: describe(results, name))
    ordered = sorted(zip(results.benchmarks, rows, strict=True), key=lambda item: _sort_key(results, item[0]))
    return Table(title, header, [[TableCell(text) for text in row] for _, row in ordered], note)


def _sort_key(results: RunResults, name: str) -> tuple:
    cell = results.cells.get(name)
    if cell is None:
        return (9, name)
    kinds = {"truth": 0, "finetune": 1, "cross": 2, "al": 3, "merge_sft": 4}
    domains = _domains(results)
    domain = domains.index(cell.domain) if cell.domain in domains else 9
    return (domain, kinds.get(cell.kind, 9), cell.strategy or "", cell.size or cell.round_index or 0, name)


def build_unplaced_table(results: RunResults) -> Table:
    """Results in the folder that no table has a place for: listed, never dropped."""
    rows = []
    for name in results.unplaced:
        data = _read_json(results.run / "eval" / name / "results.json") or {}
        rows.append([TableCell(name), TableCell(_fmt(data.get("accuracy"))), TableCell(str(data.get("num_pairs",
                                                                                                     MISSING)))])
    note = "Evaluations found under eval/ that the run's grid.json does not describe (e.g. run by hand)."
    return Table("Results not placed in a table", ["result", "accuracy", "pairs"], rows, note)


# ----------------------------------------------------------------------------------------------- rendering
def render_markdown(tables: list[Table]) -> str:
    """GitHub markdown: a heading, the table and its note per table."""
    out = []
    for table in tables:
        out += [f"## {table.title}", "", "| " + " | ".join(table.header) + " |"]
        out.append("|" + "|".join("---" for _ in table.header) + "|")
        if not table.rows:
            out.append("| " + " | ".join(MISSING for _ in table.header) + " |")
        for row in table.rows:
            out.append("| " + " | ".join(f"**{c.text}**" if c.bold else c.text for c in row) + " |")
        out += ["", table.note, ""]
    return "\n".join(out)


_TEX_REPLACEMENTS = {
    "\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#",
    "—": "---", "≥": r"$\geq$", "−": "$-$", "±": r"$\pm$", "<": r"\textless{}", ">": r"\textgreater{}",
    "{": r"\{", "}": r"\}", "$": r"\$", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def _tex(text: str) -> str:
    text = "".join(_TEX_REPLACEMENTS.get(ch, ch) for ch in text)
    for name in ("R\\_truth", "R\\_gen", "R\\_math", "R\\_code", "S\\_T"):
        base, sub = name.split("\\_")
        text = text.replace(name, f"${base}_{{\\mathrm{{{sub}}}}}$" if len(sub) > 1 else f"${base}_{sub}$")
    while "**" in text:
        text = text.replace("**", r"\textbf{", 1).replace("**", "}", 1)
    return text


def render_latex(tables: list[Table]) -> str:
    """LaTeX tables (booktabs), one table environment per table."""
    out = ["% Generated by report.py; needs \\usepackage{booktabs}."]
    for table in tables:
        out += [
            "\\begin{table}[t]", "\\centering", "\\small",
            "\\begin{tabular}{" + "l" * 2 + "c" * (len(table.header) - 2) + "}", "\\toprule",
            " & ".join(_tex(h) for h in table.header) + " \\\\", "\\midrule",
        ]
        for row in table.rows:
            out.append(" & ".join(f"\\textbf{{{_tex(c.text)}}}" if c.bold else _tex(c.text) for c in row) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}", f"\\caption{{{_tex(table.title)}. {_tex(table.note)}}}",
                "\\end{table}", ""]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------- figures
def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average (the first points average what exists so far)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def loss_curve(history: list[dict], train_size: int, full: int) -> tuple[list[float], list[float]]:
    """(share of the full set seen, training loss) per logging step of one run."""
    points = [(h["epoch"], h["loss"]) for h in history if "loss" in h and "epoch" in h]
    if not points:
        return [], []
    last_epoch = max(epoch for epoch, _ in points)
    epochs = max(1.0, math.ceil(last_epoch - 1e-9))
    share = [epoch / epochs * train_size / full for epoch, _ in points]
    return share, [loss for _, loss in points]


def _train_size(results: RunResults, name: str) -> int | None:
    cell = results.cells.get(name)
    if cell is None:
        return None
    if cell.kind == "truth":
        return full_size(results, cell.domain, table1_sizes(results))
    if cell.kind in ("finetune", "cross"):
        return cell.size
    return None


def _figure(ncols: int, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 4.0), squeeze=False)
    fig.suptitle("\n".join(textwrap.wrap(title, width=60 * ncols)), fontsize=11)
    return fig, list(axes[0]), plt


def _legend(ax) -> None:
    """A legend, or a note in the middle of a panel that has nothing to show yet."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no results yet", ha="center", va="center", transform=ax.transAxes, color="gray")


def _save(fig, plt, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def plot_loss_curves(results: RunResults, out: Path, wanted: Callable[[layout.Cell], bool], title: str) -> Path | None:
    """Training loss vs share of the full set seen, smoothed, one panel per target domain."""
    domains = _domains(results)
    curves: dict[str, list[tuple[str, list[float], list[float]]]] = {d: [] for d in domains}
    for name, history in sorted(results.log_history.items(), key=lambda item: _sort_key(results, item[0])):
        cell = results.cells.get(name)
        size = _train_size(results, name)
        full = full_size(results, cell.domain, table1_sizes(results)) if cell else None
        if cell is None or cell.domain not in curves or not wanted(cell) or not size or not full:
            continue
        share, loss = loss_curve(history, size, full)
        if share:
            curves[cell.domain].append((describe(results, name), share, smooth(loss, max(1, len(loss) // 5))))
    if not any(curves.values()):
        return None
    fig, axes, plt = _figure(len(domains), title)
    for ax, domain in zip(axes, domains, strict=True):
        for label, share, loss in curves[domain]:
            ax.plot(share, loss, label=label, linewidth=1.6)
        ax.set_title(f"{domain} pairs")
        ax.set_xlabel("share of the full training set seen")
        ax.set_ylabel("training loss (smoothed)")
        ax.grid(alpha=0.3)
        _legend(ax)
    return _save(fig, plt, out)


def _paper_points(ax, points: dict[int, float], label: str, color: str | None = None) -> None:
    if points:
        xs = sorted(points)
        ax.plot(xs, [points[x] for x in xs], "x", markersize=8, color=color, label=label)


def plot_accuracy_vs_size(results: RunResults, out: Path, paper: dict | None = None) -> Path | None:
    """Judgment accuracy vs fine-tuning pairs, a line per starting model, R_truth dashed (the paper's points as x)."""
    sizes = table1_sizes(results)
    domains = _domains(results)
    lines = {d: [] for d in domains}
    for domain, start in TABLE1_ROWS:
        if domain not in lines:
            continue
        points = [(s, row_result_name(results, domain, start, s)) for s in sizes]
        points = [(s, results.accuracy[n]) for s, n in points if n is not None]
        if points:
            lines[domain].append((start, points))
    if not any(lines.values()):
        return None
    fig, axes, plt = _figure(len(domains), f"Judgment accuracy vs fine-tuning pairs{_label_suffix(results)}")
    for ax, domain in zip(axes, domains, strict=True):
        for index, (start, points) in enumerate(lines[domain]):
            # Lines side by side at each size, a little apart, so their intervals don't hide each other.
            dodge = (index - (len(lines[domain]) - 1) / 2) * 0.012 * max(sizes)
            values = [float(r["accuracy"]) for _, r in points]
            low, high = zip(*(r.get("ci95") or (r["accuracy"], r["accuracy"]) for _, r in points), strict=True)
            errors = [[v - lo for v, lo in zip(values, low, strict=True)],
                      [hi - v for v, hi in zip(values, high, strict=True)]]
            drawn = ax.errorbar([s + dodge for s, _ in points], values, yerr=errors, marker="o", capsize=3,
                                label=f"{_start_label(start)} fine-tuned (95% CI)")
            paper_row = _paper_row(paper, "table1", domain=domain, start=start)
            if paper_row:
                _paper_points(ax, _paper_by_position(paper_row["by_size"], sizes), f"paper, {_start_label(start)}",
                              drawn.lines[0].get_color())
        truth = results.acc(results.find(domain, "truth"))
        if truth is not None:
            ax.axhline(truth, color="black", linestyle="--", linewidth=1, label="R_truth")
        ax.set_title(f"evaluated on {domain}")
        ax.set_xlabel("fine-tuning pairs" + (" (paper's columns by position)" if paper else ""))
        ax.set_ylabel("judgment accuracy")
        ax.set_xticks(sizes, [layout.size_label(s) for s in sizes])
        ax.grid(alpha=0.3)
        _legend(ax)
    return _save(fig, plt, out)


def plot_active_learning(results: RunResults, out: Path, paper: dict | None = None) -> Path | None:
    """Accuracy per AL round for each strategy, from the untouched general RM at round 0 (the paper's as x): labels
    to accuracy, each curve shaded with its 95% interval (several seeds: over seeds and evaluation pairs)."""
    rounds = al_rounds(results)
    if not any(cell.kind == "al" for cell in _cells(results)):
        return None
    cumulative = al_round_sizes(results, rounds)
    domains = _domains(results)
    fig, axes, plt = _figure(len(domains), f"Active learning vs random selection{_label_suffix(results)}")
    styles = ["o-", "s--", "d-.", "v:"]
    for ax, domain in zip(axes, domains, strict=True):
        start_name = results.find(domain, "finetune", size=0)
        paper_row = _paper_row(paper, "table2", domain=domain)
        for index, strategy in enumerate(al_strategies(results)):
            names = [start_name] + [results.find_round(domain, strategy, k) for k in rounds]
            points = [(k, results.acc(n), results.interval(n)) for k, n in zip([0, *rounds], names, strict=True)]
            points = [point for point in points if point[1] is not None]
            if points:
                drawn = ax.plot([k for k, _, _ in points], [v for _, v, _ in points], styles[index % len(styles)],
                                label=f"{strategy} selection{_seeds_text(results, names)}")
                spread = [(k, ci) for k, _, ci in points if ci is not None]
                ax.fill_between([k for k, _ in spread], [ci[0] for _, ci in spread], [ci[1] for _, ci in spread],
                                color=drawn[0].get_color(), alpha=0.15, linewidth=0)
                key = {MAIN_STRATEGY: "active", BASELINE_STRATEGY: "random"}.get(strategy)
                if paper_row and key:
                    by_size = _paper_by_position(paper_row[key], [cumulative[k] or 0 for k in rounds])
                    _paper_points(ax, {k: by_size[cumulative[k] or 0] for k in rounds if (cumulative[k] or 0) in by_size},
                                  f"paper, {strategy}", drawn[0].get_color())
        one_shot = [(k, results.acc(results.find(domain, "finetune", size=cumulative[k]))) for k in rounds if cumulative[k]]
        one_shot = [(k, v) for k, v in one_shot if v is not None]
        if one_shot:
            ax.plot([k for k, _ in one_shot], [v for _, v in one_shot], "^:", color="gray",
                    label="random pairs, one fine-tune")
        truth = results.acc(results.find(domain, "truth"))
        if truth is not None:
            ax.axhline(truth, color="black", linestyle=":", linewidth=1, label="R_truth")
        ticks = [0, *rounds]
        ax.set_xticks(ticks, [layout.size_label(cumulative[k]) if k and cumulative[k] else str(k) for k in ticks])
        ax.set_title(f"{domain}")
        ax.set_xlabel("pairs selected so far" if any(cumulative.values()) else "round")
        ax.set_ylabel("judgment accuracy")
        ax.grid(alpha=0.3)
        _legend(ax)
    return _save(fig, plt, out)


def _label_suffix(results: RunResults) -> str:
    """What a figure shows: the profile, and a pipeline check is said to be one."""
    profile = results.grid.get("profile")
    if not profile:
        return ""
    return f" — profile {profile}" + (" (pipeline check on tiny models, not a result)"
                                      if results.grid.get("pipeline_check") else "")


def run_heading(results: RunResults, run: str | Path) -> str:
    """The report's first lines: which run, profile and models made these numbers, and what they are."""
    grid = results.grid
    lines = [f"# Results of {Path(run).resolve().name}", ""]
    if grid.get("profile"):
        models = grid.get("models", {})
        sft = ", ".join(f"{d}: {m}" for d, m in models.get("sft", {}).items())
        lines.append(f"Profile **{grid['profile']}**; general RM: {models.get('general', MISSING)}; "
                     f"SFT models of the ground truth: {sft or MISSING}.")
        lines.append("")
    else:
        lines += ["No record of what each result is (a folder made by hand with the seed's commands): results are "
                  "placed by their names.", ""]
    if grid.get("pipeline_check"):
        lines += ["> **Pipeline check, not a result.** Tiny offline models on the bundled sample data: these "
                  "numbers show that every stage runs end to end; they say nothing about reward-model transfer.", ""]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------- main
@dataclass
class Report:
    tables_md: Path
    tables_tex: Path
    figures: list[Path]
    summary: Path


def write_report(run: str | Path, out: str | Path | None = None, paper: bool = False) -> Report:
    """Write tables.md, tables.tex, summary.json and the figures of a run folder into `out` (default: the run)."""
    results = load_run(run)
    out = Path(out) if out is not None else Path(run)
    out.mkdir(parents=True, exist_ok=True)
    paper_results = load_paper_results() if paper else None
    tables = [
        build_table1(results, paper_results),
        build_table2(results, paper_results),
        build_paired_tests(results),
        build_transfer_matrix(results),
        build_best_of_n_table(results),
    ]
    if results.benchmarks:
        tables += [build_benchmark_table(results), build_benchmark_parts_table(results)]
    if results.unplaced:
        tables.append(build_unplaced_table(results))
    from reward_transfer.storage import atomic_write_json, atomic_write_text

    atomic_write_text(out / "tables.md", run_heading(results, run) + render_markdown(tables))
    atomic_write_text(out / "tables.tex", render_latex(tables))
    suffix = _label_suffix(results)
    figures = [
        plot_loss_curves(results, out / "figure2_loss.png",
                         lambda c: c.kind == "truth" or (c.kind == "finetune" and c.size in table1_sizes(results)[1:]),
                         f"Figure 2: training loss, general RM fine-tuned on subsets and the ground-truth RM{suffix}"),
        plot_loss_curves(results, out / "figure3_loss_cross.png",
                         lambda c: c.kind == "truth" or (c.kind == "cross" and bool(c.size)),
                         f"Figure 3: training loss, cross-domain fine-tuning and the ground-truth RM{suffix}"),
        plot_accuracy_vs_size(results, out / "accuracy_vs_size.png", paper_results),
        plot_active_learning(results, out / "active_learning.png", paper_results),
        plot_transfer_matrix(results, out / "transfer_matrix.png"),
    ]
    summary = {
        "accuracy": {name: {key: results.accuracy[name].get(key) for key in ("accuracy", "num_pairs", "ci95")}
                     for name in sorted(results.accuracy, key=lambda n: _sort_key(results, n))},
        "best_of_n": {name: {key: result.get(key) for keys in BEST_OF_N_COLUMNS.values() for key in keys[:1]}
                      | {"num_problems": result.get("num_problems")}
                      for name, result in sorted(results.best_of_n.items(),
                                                 key=lambda item: _sort_key(results, item[0]))},
        "not_placed": results.unplaced,
        "grid": results.grid,
    }
    atomic_write_json(out / "summary.json", summary)
    return Report(out / "tables.md", out / "tables.tex", [f for f in figures if f is not None], out / "summary.json")
