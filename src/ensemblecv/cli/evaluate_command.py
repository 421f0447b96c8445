"""``ensemblecv evaluate``: CV and test metrics, the gap between them, and complementarity."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from ._console import console, progress_bar

#: CV − test accuracy gaps (fractions) worth a colour: ordinary shift vs a likely leak.
GAP_WARN, GAP_ALARM = 0.03, 0.08
LEAK_HINT = "duplicates or augmented copies across folds? run ensemblecv audit / dedup"


def _fmt(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _gap_cell(gap: float | None) -> str:
    if gap is None:
        return "-"
    text = f"{100 * gap:+.1f}"
    if gap > GAP_ALARM:
        return f"[bold red]{text}[/]"
    return f"[yellow]{text}[/]" if gap > GAP_WARN else text


def print_scores(result: dict) -> None:
    """One row per model and ensemble: CV metrics, test accuracy and the gap."""
    best = (result.get("best") or {}).get("name")
    source = result["test_source"] or "none (pass --data with a labelled set)"
    table = Table(
        "name", "kind", "cv acc", "bal acc", "f1 macro", "ece", "test acc", "gap pt",
        title=f"Evaluation — CV: honest out-of-fold; test: {escape(source)}",
        caption="* automatic choice (ensembles/best.yaml); gap = CV − test accuracy",
    )  # fmt: skip
    table.columns[0].no_wrap = True
    for row in result["gap"]:
        cv = result["cv"][row["name"]]
        is_best = row["name"] == best
        table.add_row(
            escape(row["name"]) + ("*" if is_best else ""),
            "model" if row["kind"] == "model" else "ens.",
            _fmt(cv["accuracy"], 3), _fmt(cv["balanced_accuracy"], 3),
            _fmt(cv["f1_macro"], 3), _fmt(cv["ece"], 3), _fmt(row["test_accuracy"], 3),
            _gap_cell(row["gap"]),
            style="bold" if is_best else None,
        )  # fmt: skip
    console.print(table)
    alarming = [r["name"] for r in result["gap"] if r["gap"] is not None and r["gap"] > GAP_ALARM]
    if alarming:
        console.print(
            f"[bold red]CV is more than {100 * GAP_ALARM:.0f} points above test for "
            f"{escape(', '.join(alarming))}[/]: {LEAK_HINT}"
        )


def print_complementarity(summary: dict, best: dict | None) -> None:
    """Oracle accuracy, the pairs that disagree most, beside the automatic choice."""
    acc = summary["accuracy"]
    top = max(acc, key=acc.get)
    console.print(
        f"Oracle accuracy (some model right, OOF): [bold]{summary['oracle_accuracy']:.4f}[/] "
        f"— best single model {escape(top)} {acc[top]:.4f}"
    )
    if best:
        chosen = summary.get("chosen", {})
        console.print(
            f"Automatic choice: [bold]{escape(str(best.get('name')))}[/] "
            f"({best.get('method')}: {escape(', '.join(best.get('members', [])))}), "
            f"oracle of its members {_fmt(chosen.get('oracle_accuracy'))}"
        )
    names = summary["models"]
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    if not pairs:
        return
    dis, corr = summary["disagreement"], summary["error_correlation"]
    pairs.sort(key=lambda p: (corr[p[0]][p[1]] is None, corr[p[0]][p[1]] or 0.0))
    table = Table("model", "model", "disagreement", "error corr",
                  title="Most complementary pairs (least correlated errors)")  # fmt: skip
    for a, b in pairs[:5]:
        table.add_row(escape(a), escape(b), _fmt(dis[a][b], 3), _fmt(corr[a][b], 3))
    console.print(table)
    mean = sum(dis[a][b] for a, b in pairs) / len(pairs)
    console.print(f"Mean pairwise disagreement: {mean:.3f}")


def print_worst_classes(summary: dict, n: int) -> None:
    """Each model's weakest classes and the other models strongest there."""
    for model in summary["models"]:
        helpers: dict[str, list[str]] = {}
        for h in summary["helpers"][model]:
            if h["gain"] is not None and h["gain"] > 0:  # only models that do better there
                helpers.setdefault(h["class"], []).append(
                    f"{escape(h['helper'])} {_fmt(h['helper_recall'], 2)}"
                )
        table = Table("class", "recall", "support", "mistaken for", "stronger models there",
                      title=f"{escape(model)}: worst classes")  # fmt: skip
        for row in summary["worst_classes"][model][:n]:
            table.add_row(
                escape(row["class"]), _fmt(row["recall"], 3), str(row["support"]),
                escape(str(row["confused_with"] or "-")),
                ", ".join(helpers.get(row["class"], [])) or "-",
            )  # fmt: skip
        console.print(table)


def evaluate(
    workspace: Path = typer.Argument(..., help="Workspace with finished runs."),
    data: str | None = typer.Option(
        None, "--data", help="Labelled test set: folder, CSV or built-in name."
    ),
    ensemble: str | None = typer.Option(
        None, "--ensemble", help="Only these ensembles (comma-separated; default: all)."
    ),
    worst: int = typer.Option(5, help="Worst classes to show per model."),
) -> None:
    """Metrics on CV and test, the CV-vs-test gap, and which models complement each other."""
    from ..data.samples import load_samples
    from ..evaluate import evaluate_workspace

    if data is not None:
        table = load_samples(data)
        with progress_bar("scan", len(table)) as advance:
            result = evaluate_workspace(workspace, table, ensemble, progress=advance)
    else:
        result = evaluate_workspace(workspace, None, ensemble)
    print_scores(result)
    print_complementarity(result["complementarity"], result["best"])
    print_worst_classes(result["complementarity"], worst)
    console.print(f"Wrote {escape(result['output'])}/ (metrics.json, complementarity.json, ...)")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
