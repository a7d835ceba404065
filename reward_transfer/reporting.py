"""The report of a reproduction run (`report.py`): tables.md, tables.tex, summary.json and the figures, from
whatever the run folder holds; `--paper` puts the published numbers beside ours."""

from dataclasses import dataclass
from pathlib import Path

from reward_transfer.report_figures import (
    label_suffix,
    plot_accuracy_vs_size,
    plot_active_learning,
    plot_loss_curves,
    plot_transfer_matrix,
)
from reward_transfer.report_render import render_latex, render_markdown
from reward_transfer.report_tables import (
    BEST_OF_N_COLUMNS,
    build_benchmark_parts_table,
    build_benchmark_table,
    build_best_of_n_table,
    build_paired_tests,
    build_table1,
    build_table2,
    build_transfer_matrix,
    build_unplaced_table,
)
from reward_transfer.run_results import (
    MISSING,
    RunResults,
    load_paper_results,
    load_run,
    sort_key,
    table1_sizes,
)


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
        lines += ["No record of what each result is (a folder made by hand with the original code's commands): results are "
                  "placed by their names.", ""]
    if grid.get("pipeline_check"):
        lines += ["> **Pipeline check, not a result.** Tiny offline models on the bundled sample data: these "
                  "numbers show that every stage runs end to end; they say nothing about reward-model transfer.", ""]
    return "\n".join(lines) + "\n"


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
    suffix = label_suffix(results)
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
                     for name in sorted(results.accuracy, key=lambda n: sort_key(results, n))},
        "best_of_n": {name: {key: result.get(key) for keys in BEST_OF_N_COLUMNS.values() for key in keys[:1]}
                      | {"num_problems": result.get("num_problems")}
                      for name, result in sorted(results.best_of_n.items(),
                                                 key=lambda item: sort_key(results, item[0]))},
        "not_placed": results.unplaced,
        "grid": results.grid,
    }
    atomic_write_json(out / "summary.json", summary)
    return Report(out / "tables.md", out / "tables.tex", [f for f in figures if f is not None], out / "summary.json")
