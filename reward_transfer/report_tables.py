"""The report's tables: Table 1 and 2 with S_T and its interval, labels to reach R_truth, the paired tests, the
transfer matrix, best-of-n and the benchmarks (rendered by `report_render`)."""

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from reward_transfer import run_layout as layout
from reward_transfer.benchmark_report import NOTE as BENCHMARK_NOTE
from reward_transfer.benchmark_report import PARTS_NOTE as BENCHMARK_PARTS_NOTE
from reward_transfer.benchmark_report import benchmark_part_rows, benchmark_rows
from reward_transfer.report_render import Table, TableCell
from reward_transfer.run_results import (
    BASELINE_STRATEGY,
    MAIN_STRATEGY,
    MISSING,
    NOT_REACHED,
    TABLE1_ROWS,
    RunResults,
    al_round_sizes,
    al_rounds,
    al_strategies,
    column_mapping,
    describe,
    full_size,
    paper_by_position,
    published_row,
    read_json,
    row_result_name,
    run_domains,
    seeds_text,
    sort_key,
    start_label,
    table1_sizes,
    transfer_name,
)
from reward_transfer.seed_pooling import two_level_difference_p

# Best-of-n results.json: our column title → the keys the evaluation may use for it, first found wins.
BEST_OF_N_COLUMNS = {
    "RM's pick correct": ("best_of_n_accuracy", "accuracy"),
    "one sample (expected)": ("random_pick_accuracy",),
    "any candidate correct": ("oracle_accuracy",),
}


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


def _paper_transferability(paper: dict, paper_row: dict, key: str, domain: str) -> str:
    """S_T of a row of the paper's tables, computed the same way as ours."""
    values = {int(size): value for size, value in paper_row[key].items()}
    return transferability(paper_row["truth"], values, int(paper["full_size"][domain])).text


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
    domains = run_domains(results)
    header = ["domain", "start", "eval pairs", "R_truth", *(layout.size_label(s) for s in sizes), "S_T"]
    rows, mapping = [], ""
    for domain, start in TABLE1_ROWS:
        if domain not in domains or (start != "general" and start not in domains):
            continue
        truth = results.find(domain, "truth")
        names = {s: row_result_name(results, domain, start, s) for s in sizes}
        paper_row = published_row(paper, "table1", domain=domain, start=start)
        paper_values = paper_by_position(paper_row["by_size"], sizes) if paper_row else {}
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
        row = [TableCell(domain), TableCell(start_label(start)),
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


def build_table2(results: RunResults, paper: dict | None = None) -> Table:
    """Table 2: active learning per strategy and round beside R_truth and one fine-tune on as many random pairs."""
    rounds = al_rounds(results)
    cumulative = al_round_sizes(results, rounds)
    sizes = [cumulative[k] or 0 for k in rounds]
    labels = [layout.size_label(cumulative[k]) if cumulative[k] else f"round {k}" for k in rounds]
    header = ["domain", "selection", "eval pairs", "R_truth", *labels, "S_T", "labels to R_truth"]
    rows, mapping = [], ""
    for domain in run_domains(results):
        truth = results.find(domain, "truth")
        paper_row = published_row(paper, "table2", domain=domain)
        mapping = mapping or (column_mapping(paper_row["active"], sizes) if paper_row else "")
        full = full_size(results, domain, [])
        block: list[tuple[str, dict[int, str | None], dict[int, float]]] = []
        for strategy in al_strategies(results):
            names = {k: results.find_round(domain, strategy, k) for k in rounds}
            key = {MAIN_STRATEGY: "active", BASELINE_STRATEGY: "random"}.get(strategy)
            published = paper_by_position(paper_row[key], sizes) if paper_row and key else {}
            label = f"AL {strategy}" if strategy != BASELINE_STRATEGY else "random (AL loop)"
            block.append((label + seeds_text(results, names.values()), names,
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


def build_transfer_matrix(results: RunResults) -> Table:
    """Every source RM on every target domain, at 0k and after the largest fine-tuning size, and the asymmetry."""
    domains = run_domains(results)
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


def paired_p(results: RunResults, first: str, second: str, shared: list[str]) -> float:
    """McNemar's exact test for two single models; for a strategy pooled over seeds, the two-level bootstrap test on
    its chains' right/wrong outcomes (seeds and pairs resampled)."""
    matrices = [_seed_matrix(results, name, shared) for name in (first, second)]
    if all(len(matrix) == 1 for matrix in matrices):
        return mcnemar_p(*(matrix[0].astype(bool).tolist() for matrix in matrices))
    return two_level_difference_p(*matrices)


def _seed_matrix(results: RunResults, name: str, shared: list[str]) -> np.ndarray:
    """(seeds × pairs) right/wrong outcomes of a result on `shared`: its chains' when pooled over seeds."""
    chains = results.accuracy[name].get("chains") or [name]
    return np.array([[results.outcomes(chain)[pid] for pid in shared] for chain in chains], dtype=np.float64)


def build_paired_tests(results: RunResults) -> Table:
    """Beyond the paper: AL vs random per round, and each fine-tune vs R_truth, on the same evaluation pairs."""
    comparisons: list[tuple[str, str, str, str]] = []  # (domain, label, A, B)
    rounds = al_rounds(results)
    strategies = al_strategies(results)
    for domain in run_domains(results):
        for strategy in (s for s in strategies if s != BASELINE_STRATEGY):
            for k in rounds:
                ours = results.find_round(domain, strategy, k)
                baseline = results.find_round(domain, BASELINE_STRATEGY, k)
                if ours and baseline:
                    comparisons.append((domain, f"AL {strategy} vs random, round {k}", ours, baseline))
        truth = results.find(domain, "truth")
        for name in sorted(results.accuracy, key=lambda n: sort_key(results, n)):
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
                     TableCell(f"{'+' if diff >= 0 else '−'}{abs(diff):.4f}"), TableCell(f"{paired_p(results, first, second, shared):.3g}")])
    note = ("Both models judged on the same evaluation pairs; p: two-sided exact McNemar test (a small p says the "
            "difference is unlikely to be noise on these pairs); a strategy run with several seeds: a bootstrap test "
            "resampling the pairs and each strategy's seeds, so that it counts the spread over seeds. Needs the "
            "evaluations' scores.jsonl.")
    return Table("Paired tests (beyond the paper)", ["domain", "comparison", "shared pairs", "A", "B", "A − B", "p"],
                 rows, note)


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
    for name, result in sorted(results.best_of_n.items(), key=lambda item: sort_key(results, item[0])):
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
    ordered = sorted(zip(results.benchmarks, rows, strict=True), key=lambda item: sort_key(results, item[0]))
    return Table(title, header, [[TableCell(text) for text in row] for _, row in ordered], note)


def build_unplaced_table(results: RunResults) -> Table:
    """Results in the folder that no table has a place for: listed, never dropped."""
    rows = []
    for name in results.unplaced:
        data = read_json(results.run / "eval" / name / "results.json") or {}
        rows.append([TableCell(name), TableCell(_fmt(data.get("accuracy"))), TableCell(str(data.get("num_pairs",
                                                                                                     MISSING)))])
    note = "Evaluations found under eval/ that the run's grid.json does not describe (e.g. run by hand)."
    return Table("Results not placed in a table", ["result", "accuracy", "pairs"], rows, note)
