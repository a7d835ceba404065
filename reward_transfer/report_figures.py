"""The report's figures: training loss (Figures 2 and 3), accuracy against fine-tuning pairs, active learning as
labels-to-accuracy curves with intervals, and the transfer matrix."""

import math
import textwrap
from collections.abc import Callable
from pathlib import Path

from reward_transfer import run_layout as layout
from reward_transfer.run_results import (
    BASELINE_STRATEGY,
    MAIN_STRATEGY,
    MISSING,
    TABLE1_ROWS,
    RunResults,
    al_round_sizes,
    al_rounds,
    al_strategies,
    describe,
    full_size,
    paper_by_position,
    published_row,
    result_cells,
    row_result_name,
    run_domains,
    seeds_text,
    sort_key,
    start_label,
    table1_sizes,
    transfer_name,
)


def label_suffix(results: RunResults) -> str:
    """What a figure shows: the profile, and a pipeline check is said to be one."""
    profile = results.grid.get("profile")
    if not profile:
        return ""
    return f" — profile {profile}" + (" (pipeline check on tiny models, not a result)"
                                      if results.grid.get("pipeline_check") else "")


def plot_transfer_matrix(results: RunResults, out: Path) -> Path | None:
    """Heat maps of the transfer matrix (rows: source RM, columns: target domain) at 0k and the largest size."""
    import numpy as np

    domains = run_domains(results)
    largest = max(table1_sizes(results))
    sizes = [0] + ([largest] if largest else [])
    grids = {s: np.array([[results.acc(transfer_name(results, a, b, s)) or np.nan for b in domains]
                          for a in domains], dtype=float) for s in sizes}
    if all(np.isnan(g).all() for g in grids.values()):
        return None
    fig, axes, plt = _figure(len(sizes), f"Transfer matrix: judgment accuracy{label_suffix(results)}")
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
    domains = run_domains(results)
    curves: dict[str, list[tuple[str, list[float], list[float]]]] = {d: [] for d in domains}
    for name, history in sorted(results.log_history.items(), key=lambda item: sort_key(results, item[0])):
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
    domains = run_domains(results)
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
    fig, axes, plt = _figure(len(domains), f"Judgment accuracy vs fine-tuning pairs{label_suffix(results)}")
    for ax, domain in zip(axes, domains, strict=True):
        for index, (start, points) in enumerate(lines[domain]):
            # Lines side by side at each size, a little apart, so their intervals don't hide each other.
            dodge = (index - (len(lines[domain]) - 1) / 2) * 0.012 * max(sizes)
            values = [float(r["accuracy"]) for _, r in points]
            low, high = zip(*(r.get("ci95") or (r["accuracy"], r["accuracy"]) for _, r in points), strict=True)
            errors = [[v - lo for v, lo in zip(values, low, strict=True)],
                      [hi - v for v, hi in zip(values, high, strict=True)]]
            drawn = ax.errorbar([s + dodge for s, _ in points], values, yerr=errors, marker="o", capsize=3,
                                label=f"{start_label(start)} fine-tuned (95% CI)")
            paper_row = published_row(paper, "table1", domain=domain, start=start)
            if paper_row:
                _paper_points(ax, paper_by_position(paper_row["by_size"], sizes), f"paper, {start_label(start)}",
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
    if not any(cell.kind == "al" for cell in result_cells(results)):
        return None
    cumulative = al_round_sizes(results, rounds)
    domains = run_domains(results)
    fig, axes, plt = _figure(len(domains), f"Active learning vs random selection{label_suffix(results)}")
    styles = ["o-", "s--", "d-.", "v:"]
    for ax, domain in zip(axes, domains, strict=True):
        start_name = results.find(domain, "finetune", size=0)
        paper_row = published_row(paper, "table2", domain=domain)
        for index, strategy in enumerate(al_strategies(results)):
            names = [start_name] + [results.find_round(domain, strategy, k) for k in rounds]
            points = [(k, results.acc(n), results.interval(n)) for k, n in zip([0, *rounds], names, strict=True)]
            points = [point for point in points if point[1] is not None]
            if points:
                drawn = ax.plot([k for k, _, _ in points], [v for _, v, _ in points], styles[index % len(styles)],
                                label=f"{strategy} selection{seeds_text(results, names)}")
                spread = [(k, ci) for k, _, ci in points if ci is not None]
                ax.fill_between([k for k, _ in spread], [ci[0] for _, ci in spread], [ci[1] for _, ci in spread],
                                color=drawn[0].get_color(), alpha=0.15, linewidth=0)
                key = {MAIN_STRATEGY: "active", BASELINE_STRATEGY: "random"}.get(strategy)
                if paper_row and key:
                    by_size = paper_by_position(paper_row[key], [cumulative[k] or 0 for k in rounds])
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
