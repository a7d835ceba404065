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
from reward_transfer.errors import UserError

log = logging.getLogger(__name__)

PAPER_RESULTS = Path(__file__).resolve().parent.parent / "data" / "paper_results.json"
MISSING = "—"
NOT_REACHED = "not reached"
MAIN_STRATEGY, BASELINE_STRATEGY = "margin", "random"
# Table 1's rows in the paper's order: (target domain, starting model).
TABLE1_ROWS = (("math", "gen"), ("code", "gen"), ("code", "math"), ("math", "code"))
# Best-of-n results.json: our column title → the keys the evaluation may use for it, first found wins.
BEST_OF_N_COLUMNS = {
    "RM pick": ("best_of_n_accuracy", "accuracy"),
    "oracle": ("oracle_accuracy",),
    "first sample": ("first_sample_accuracy",),
    "random pick": ("random_pick_accuracy",),
}


# ---------------------------------------------------------------------------------------------- reading
@dataclass
class RunResults:
    """Everything a run folder holds that the report uses, keyed by result/model name."""

    run: Path
    accuracy: dict[str, dict] = field(default_factory=dict)
    best_of_n: dict[str, dict] = field(default_factory=dict)
    log_history: dict[str, list[dict]] = field(default_factory=dict)
    grid: dict = field(default_factory=dict)

    def acc(self, name: str) -> float | None:
        """The judgment accuracy of result `name`; None when missing or undefined (NaN: no pairs)."""
        result = self.accuracy.get(name)
        value = None if result is None else float(result["accuracy"])
        return None if value is None or math.isnan(value) else value


def _read_json(path: Path) -> object | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        log.warning("skipping unreadable %s: %s", path, err)
        return None


def load_run(run: str | Path) -> RunResults:
    """Collect results.json (judgment accuracy and best-of-n) and log_history.json files of a run folder."""
    run = Path(run)
    if not run.is_dir():
        raise UserError(f"run folder {run} does not exist")
    results = RunResults(run=run, grid=layout.read_grid(run))
    for path in sorted(run.glob("eval/*/results.json")):
        name, data = path.parent.name, _read_json(path)
        if not isinstance(data, dict):
            continue
        if data.get("mode") == "best_of_n" or name.endswith(layout.BEST_OF_N_SUFFIX):
            results.best_of_n[name.removesuffix(layout.BEST_OF_N_SUFFIX)] = data
        elif "accuracy" in data:
            results.accuracy[name] = data
    for path in sorted(run.glob("models/*/log_history.json")):
        data = _read_json(path)
        if isinstance(data, list):
            results.log_history[path.parent.name] = data
    return results


def load_paper_results(path: Path = PAPER_RESULTS) -> dict:
    """The paper's published Tables 1 and 2 (data/paper_results.json)."""
    return json.loads(Path(path).read_text())


# ------------------------------------------------------------------------------------------- the numbers
def _domains(results: RunResults) -> list[str]:
    return list(results.grid.get("domains", layout.DOMAINS))


def _cells(results: RunResults) -> list[layout.Cell]:
    """The table cells of the run's accuracy results (names outside the convention are left out)."""
    return [cell for cell in map(layout.parse_name, results.accuracy) if cell is not None]


def table1_sizes(results: RunResults) -> list[int]:
    """Table 1's columns: 0 and the fine-tuning subset sizes (planned ones, else the ones found)."""
    planned = results.grid.get("sizes")
    if planned:
        return [0, *sorted(int(s) for s in planned)]
    return sorted({cell.size for cell in _cells(results) if cell.kind in ("gen", "from")} | {0})


def full_size(results: RunResults, domain: str, sizes: Iterable[int]) -> int | None:
    """N_T: the full training size of the domain (planned, else the largest size seen)."""
    planned = results.grid.get("full_size", {}).get(domain)
    if planned:
        return int(planned)
    sizes = [s for s in sizes if s > 0]
    return max(sizes) if sizes else None


def row_result_name(domain: str, start: str, size: int) -> str:
    """The result name of Table 1's cell (target domain, starting model, fine-tuning size)."""
    if start == "gen":
        return layout.general_name(domain, size)
    return layout.cross_name(domain, start, size)


@dataclass
class Transferability:
    """S_T = 1 − N_F/N_T for the smallest size N_F whose accuracy reaches R_truth."""

    value: float | None
    text: str


def transferability(truth: float | None, values: dict[int, float | None], full: int | None) -> Transferability:
    """S_T of one row. '≥' marks a lower bound (a smaller size is still missing); '—' when unknown."""
    present = {size: v for size, v in values.items() if v is not None}
    if truth is None or full is None or not present:
        return Transferability(None, MISSING)
    smaller_missing = False
    for size in sorted(values):
        value = values[size]
        if value is None:
            smaller_missing = True
        elif value >= truth:
            score = 1 - size / full
            return Transferability(score, f"≥{score:.4f}" if smaller_missing else f"{score:.4f}")
    return Transferability(None, NOT_REACHED if len(present) == len(values) else f"{NOT_REACHED} (so far)")


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


def _with_paper(ours: float | None, paper: float | None) -> str:
    if paper is None:
        return _fmt(ours)
    if ours is None:
        return f"{MISSING} (paper {paper:.4f})"
    diff = ours - paper
    return f"{ours:.4f} (paper {paper:.4f}, {'+' if diff >= 0 else '−'}{abs(diff):.4f})"


def _bold_best(values: list[float | None]) -> list[bool]:
    numbers = [v for v in values if v is not None]
    best = max(numbers) if len(numbers) > 1 else math.nan  # a lone number is nothing to compare
    return [v is not None and v == best for v in values]


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


def _paper_transferability(paper: dict, paper_row: dict, key: str, domain: str) -> str:
    """S_T of a row of the paper's tables, computed the same way as ours."""
    values = {int(size): value for size, value in paper_row[key].items()}
    return transferability(paper_row["truth"], values, int(paper["full_size"][domain])).text


def _with_paper_text(ours: str, paper: str | None) -> str:
    return ours if paper is None else f"{ours} (paper {paper})"


def _start_label(start: str) -> str:
    return "R_gen" if start == "gen" else f"R_{start}"


def build_table1(results: RunResults, paper: dict | None = None) -> Table:
    """Table 1: R_truth, then accuracy after fine-tuning on 0 … N pairs, and S_T, per (domain, start)."""
    sizes = table1_sizes(results)
    domains = _domains(results)
    header = ["domain", "start", "R_truth", *(layout.size_label(s) for s in sizes), "S_T"]
    rows = []
    for domain, start in TABLE1_ROWS:
        if domain not in domains or (start != "gen" and start not in domains):
            continue
        truth = results.acc(layout.truth_name(domain))
        values = {s: results.acc(row_result_name(domain, start, s)) for s in sizes}
        paper_row = _paper_row(paper, "table1", domain=domain, start=start)
        paper_values = _paper_by_position(paper_row["by_size"], sizes) if paper_row else {}
        paper_truth = paper_row["truth"] if paper_row else None
        scores = [truth, *values.values()]
        texts = [_with_paper(truth, paper_truth) if paper else _fmt(truth)]
        texts += [_with_paper(values[s], paper_values.get(s)) if paper else _fmt(values[s]) for s in sizes]
        s_t = transferability(truth, values, full_size(results, domain, sizes))
        paper_s_t = _paper_transferability(paper, paper_row, "by_size", domain) if paper_row else None
        row = [TableCell(domain), TableCell(_start_label(start))]
        row += [TableCell(t, b) for t, b in zip(texts, _bold_best(scores), strict=True)]
        row.append(TableCell(_with_paper_text(s_t.text, paper_s_t)))
        rows.append(row)
    note = (
        "Judgment accuracy S_JA on the domain's evaluation pairs. Columns: fine-tuning pairs (0 = the starting "
        "model untouched). S_T = 1 − N_F/N_T for the smallest N_F reaching R_truth (≥: a smaller size is "
        f"missing). {MISSING}: not in this run (yet)."
    )
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


def build_table2(results: RunResults, paper: dict | None = None) -> Table:
    """Table 2: active learning (margin) per round, random selection of as many pairs in brackets."""
    rounds = al_rounds(results)
    cumulative = al_round_sizes(results, rounds)
    labels = [layout.size_label(cumulative[k]) if cumulative[k] else f"round {k}" for k in rounds]
    header = ["domain", "R_truth", *labels, "S_T (AL)", "S_T (random)"]
    rows = []
    for domain in _domains(results):
        truth = results.acc(layout.truth_name(domain))
        active = {k: results.acc(layout.active_learning_name(domain, MAIN_STRATEGY, k)) for k in rounds}
        random = {k: results.acc(layout.active_learning_name(domain, BASELINE_STRATEGY, k)) for k in rounds}
        paper_row = _paper_row(paper, "table2", domain=domain)
        sizes = [cumulative[k] or 0 for k in rounds]
        paper_active = _paper_by_position(paper_row["active"], sizes) if paper_row else {}
        paper_random = _paper_by_position(paper_row["random"], sizes) if paper_row else {}
        bold = _bold_best([truth, *active.values(), *random.values()])
        bold_truth, bold_active, bold_random = bold[0], bold[1 : 1 + len(rounds)], bold[1 + len(rounds) :]
        row = [TableCell(domain)]
        row.append(TableCell(_with_paper(truth, paper_row["truth"]) if paper_row else _fmt(truth), bold_truth))
        for i, k in enumerate(rounds):
            ours = _fmt(active[k]) if not paper_row else _with_paper(active[k], paper_active.get(sizes[i]))
            theirs = _fmt(random[k]) if not paper_row else _with_paper(random[k], paper_random.get(sizes[i]))
            ours = f"**{ours}**" if bold_active[i] else ours
            theirs = f"**{theirs}**" if bold_random[i] else theirs
            row.append(TableCell(f"{ours} ({theirs})"))
        full = full_size(results, domain, [])
        by_size = {cumulative[k] or 0: active[k] for k in rounds}
        by_size_random = {cumulative[k] or 0: random[k] for k in rounds}
        for values, key in ((by_size, "active"), (by_size_random, "random")):
            paper_s_t = _paper_transferability(paper, paper_row, key, domain) if paper_row else None
            row.append(TableCell(_with_paper_text(transferability(truth, values, full).text, paper_s_t)))
        rows.append(row)
        one_shot = {size: results.acc(layout.general_name(domain, size)) for size in sizes if size}
        if any(v is not None for v in one_shot.values()):
            bold = _bold_best([truth, *one_shot.values()])
            rows.append([TableCell(f"{domain}, one fine-tune"), TableCell(_fmt(truth), bold[0]),
                         *(TableCell(_fmt(v), b) for v, b in zip(one_shot.values(), bold[1:], strict=True)),
                         TableCell(""), TableCell(transferability(truth, one_shot, full).text)])
    note = (
        f"Active learning ({MAIN_STRATEGY} sampling) on the general RM, columns = pairs selected so far; in "
        f"brackets the same number of pairs chosen at random ({BASELINE_STRATEGY} selection, same loop). "
        "'one fine-tune': the general RM fine-tuned once on that many random pairs (the paper's "
        "<domain>_2.5k/5k/7.5k runs)."
    )
    return Table("Table 2: active learning vs random selection", header, rows, note)


def describe(name: str) -> str:
    """A human-readable label of a model name ('R_gen + 20k', 'AL margin, round 3', ...)."""
    cell = layout.parse_name(name)
    if cell is None:
        return name
    if cell.kind == "truth":
        return "R_truth"
    if cell.kind == "gen":
        return "R_gen" if cell.size == 0 else f"R_gen + {layout.size_label(cell.size)}"
    if cell.kind == "from":
        start = f"R_{cell.source}"
        return start if cell.size == 0 else f"{start} + {layout.size_label(cell.size)}"
    return f"AL {cell.strategy}, round {cell.round_index}"


def _first_key(result: dict, keys: Iterable[str]) -> float | None:
    for key in keys:
        value = result.get(key)
        if isinstance(value, int | float):
            return float(value)
    return None


def build_best_of_n_table(results: RunResults) -> Table:
    """Share of evaluation problems whose top-scored candidate is correct, beside the baselines."""
    header = ["domain", "model", *BEST_OF_N_COLUMNS, "problems"]
    rows = []
    for name, result in sorted(results.best_of_n.items(), key=lambda item: _sort_key(item[0])):
        cell = layout.parse_name(name)
        values = [_first_key(result, keys) for keys in BEST_OF_N_COLUMNS.values()]
        problems = result.get("num_problems")
        rows.append(
            [TableCell(cell.domain if cell else ""), TableCell(describe(name))]
            + [TableCell(_fmt(v)) for v in values]
            + [TableCell(str(problems) if problems is not None else MISSING)]
        )
    note = (
        "Best-of-n: each evaluation problem's saved candidates are ranked by the RM; the share of problems whose "
        "top-ranked candidate is correct (math) / passes all tests (code). Oracle: any candidate correct."
    )
    return Table("Best-of-n with the final reward models", header, rows, note)


def _sort_key(name: str) -> tuple:
    cell = layout.parse_name(name)
    if cell is None:
        return (9, name)
    kinds = {"truth": 0, "gen": 1, "from": 2, "al": 3}
    domain = layout.DOMAINS.index(cell.domain) if cell.domain in layout.DOMAINS else 9
    return (domain, kinds[cell.kind], cell.strategy or "", cell.size or cell.round_index or 0, name)


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
    cell = layout.parse_name(name)
    if cell is None:
        return None
    if cell.kind == "truth":
        return full_size(results, cell.domain, table1_sizes(results))
    if cell.kind in ("gen", "from"):
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
    for name, history in sorted(results.log_history.items(), key=lambda item: _sort_key(item[0])):
        cell = layout.parse_name(name)
        size = _train_size(results, name)
        full = full_size(results, cell.domain, table1_sizes(results)) if cell else None
        if cell is None or cell.domain not in curves or not wanted(cell) or not size or not full:
            continue
        share, loss = loss_curve(history, size, full)
        if share:
            curves[cell.domain].append((describe(name), share, smooth(loss, max(1, len(loss) // 5))))
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


def plot_accuracy_vs_size(results: RunResults, out: Path) -> Path | None:
    """Judgment accuracy vs fine-tuning pairs, a line per starting model, R_truth dashed."""
    sizes = table1_sizes(results)
    domains = _domains(results)
    lines = {d: [] for d in domains}
    for domain, start in TABLE1_ROWS:
        if domain not in lines:
            continue
        points = [(s, results.accuracy.get(row_result_name(domain, start, s))) for s in sizes]
        points = [(s, r) for s, r in points if r is not None]
        if points:
            lines[domain].append((_start_label(start), points))
    if not any(lines.values()):
        return None
    fig, axes, plt = _figure(len(domains), "Judgment accuracy vs fine-tuning pairs")
    for ax, domain in zip(axes, domains, strict=True):
        for index, (label, points) in enumerate(lines[domain]):
            # Lines side by side at each size, a little apart, so their intervals don't hide each other.
            dodge = (index - (len(lines[domain]) - 1) / 2) * 0.012 * max(sizes)
            values = [float(r["accuracy"]) for _, r in points]
            low, high = zip(*(r.get("ci95") or (r["accuracy"], r["accuracy"]) for _, r in points), strict=True)
            errors = [[v - lo for v, lo in zip(values, low, strict=True)],
                      [hi - v for v, hi in zip(values, high, strict=True)]]
            ax.errorbar([s + dodge for s, _ in points], values, yerr=errors, marker="o", capsize=3,
                        label=f"{label} fine-tuned (95% CI)")
        truth = results.acc(layout.truth_name(domain))
        if truth is not None:
            ax.axhline(truth, color="black", linestyle="--", linewidth=1, label="R_truth")
        ax.set_title(f"evaluated on {domain}")
        ax.set_xlabel("fine-tuning pairs")
        ax.set_ylabel("judgment accuracy")
        ax.set_xticks(sizes, [layout.size_label(s) for s in sizes])
        ax.grid(alpha=0.3)
        _legend(ax)
    return _save(fig, plt, out)


def plot_active_learning(results: RunResults, out: Path) -> Path | None:
    """Accuracy per AL round, margin vs random selection, from the untouched general RM at round 0."""
    rounds = al_rounds(results)
    if not any(cell.kind == "al" for cell in _cells(results)):
        return None
    cumulative = al_round_sizes(results, rounds)
    domains = _domains(results)
    fig, axes, plt = _figure(len(domains), "Active learning vs random selection")
    for ax, domain in zip(axes, domains, strict=True):
        start = results.acc(layout.general_name(domain, 0))
        for strategy, style in ((MAIN_STRATEGY, "o-"), (BASELINE_STRATEGY, "s--")):
            points = [(0, start)] + [
                (k, results.acc(layout.active_learning_name(domain, strategy, k))) for k in rounds
            ]
            points = [(k, v) for k, v in points if v is not None]
            if points:
                ax.plot([k for k, _ in points], [v for _, v in points], style, label=f"{strategy} selection")
        one_shot = [(k, results.acc(layout.general_name(domain, cumulative[k]))) for k in rounds if cumulative[k]]
        one_shot = [(k, v) for k, v in one_shot if v is not None]
        if one_shot:
            ax.plot([k for k, _ in one_shot], [v for _, v in one_shot], "^:", color="gray",
                    label="random pairs, one fine-tune")
        truth = results.acc(layout.truth_name(domain))
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
        build_best_of_n_table(results),
    ]
    from reward_transfer.storage import atomic_write_json, atomic_write_text

    heading = f"# Results of {Path(run).resolve().name}\n\n"
    atomic_write_text(out / "tables.md", heading + render_markdown(tables))
    atomic_write_text(out / "tables.tex", render_latex(tables))
    figures = [
        plot_loss_curves(results, out / "figure2_loss.png",
                         lambda c: c.kind == "truth" or (c.kind == "gen" and c.size in table1_sizes(results)[1:]),
                         "Figure 2: training loss, general RM fine-tuned on subsets and the ground-truth RM"),
        plot_loss_curves(results, out / "figure3_loss_cross.png",
                         lambda c: c.kind == "truth" or (c.kind == "from" and bool(c.size)),
                         "Figure 3: training loss, cross-domain fine-tuning and the ground-truth RM"),
        plot_accuracy_vs_size(results, out / "accuracy_vs_size.png"),
        plot_active_learning(results, out / "active_learning.png"),
    ]
    summary = {
        "accuracy": {name: {key: results.accuracy[name].get(key) for key in ("accuracy", "num_pairs", "ci95")}
                     for name in sorted(results.accuracy, key=_sort_key)},
        "best_of_n": {name: {key: result.get(key) for keys in BEST_OF_N_COLUMNS.values() for key in keys[:1]}
                      | {"num_problems": result.get("num_problems")}
                      for name, result in sorted(results.best_of_n.items(), key=lambda item: _sort_key(item[0]))},
        "grid": results.grid,
    }
    atomic_write_json(out / "summary.json", summary)
    return Report(out / "tables.md", out / "tables.tex", [f for f in figures if f is not None], out / "summary.json")
