"""A comparison for people: rich tables for the terminal and a section of report.html."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from evaluation.compare.core import fmt_change, fmt_value

_STYLE = {"regression": "red", "inconclusive": "yellow", "improvement": "green", "ok": "green"}
_CLASS = {"regression": "bad", "inconclusive": "warn", "improvement": "ok", "ok": "ok"}
_COLUMNS = ("metric", "baseline", "new", "change", "95% CI", "allowed", "verdict")


def _cells(row: dict[str, Any]) -> list[str]:
    unit, cu = row["unit"], row["change_unit"]
    low, high = row["ci"]
    return [row["metric"], fmt_value(row["baseline"], unit), fmt_value(row["new"], unit),
            fmt_change(row["change"], cu), f"{fmt_change(low, cu)} .. {fmt_change(high, cu)}",
            row["allowed"]["text"], row["verdict"]]


def _where(row: dict[str, Any]) -> str:
    return "overall" if row.get("slice") is None else f"{row['scope']} {row['slice']}"


def _skipped(skip: dict[str, Any]) -> str:
    metric = f" {skip['metric']}" if skip.get("metric") else ""
    return f"{_where(skip)}{metric}: {skip.get('reason')}"


def terminal_tables(result: dict[str, Any]) -> list[Any]:
    """What `callfleet compare` prints: every overall metric; from the per-scenario and
    per-persona comparisons only what is not ok; what could not be compared; the verdict."""
    base, new = result.get("baseline") or {}, result.get("new") or {}
    out: list[Any] = []
    rows = result.get("rows") or []
    overall = [r for r in rows if r.get("slice") is None]
    sliced = [r for r in rows if r.get("slice") is not None]
    notable = [r for r in sliced if r["verdict"] != "ok"]
    for title, shown, with_where in (
            (f"compare {base.get('run_id', '?')} ({base.get('calls')} calls) -> "
             f"{new.get('run_id', '?')} ({new.get('calls')} calls)", overall, False),
            ("per scenario / persona (not ok only)", notable, True)):
        if not shown:
            continue
        table = Table(title=title)
        for column in (("where",) if with_where else ()) + _COLUMNS:
            table.add_column(column, justify="left" if column in ("where", "metric") else "right",
                             no_wrap=column in ("95% CI", "verdict"))
        for row in shown:
            cells = _cells(row)
            style = _STYLE[row["verdict"]]
            shown_verdict = "REGRESSION" if row["verdict"] == "regression" else row["verdict"]
            cells[-1] = f"[{style}]{shown_verdict}[/{style}]"
            table.add_row(*(([_where(row)] if with_where else []) + cells))
        out.append(table)
    if sliced:
        out.append(f"per scenario / persona: {len(sliced)} comparisons, "
                   f"{len(sliced) - len(notable)} ok")
    out += [f"  not compared: {_skipped(s)}" for s in result.get("not_compared") or []]
    n = result.get("regressions", 0)
    counts = result.get("verdicts") or {}
    tally = ", ".join(f"{counts.get(v, 0)} {v}" for v in ("regression", "inconclusive",
                                                           "improvement", "ok"))
    out.append(f"[red]compare: {n} REGRESSION(S)[/red] ({tally})" if n else
               f"[green]compare: no regression[/green] ({tally})")
    return out


def html_section(result: dict[str, Any], esc: Any) -> str:
    """The "Compared with the baseline" section of report.html; `esc` escapes every text."""
    base = result.get("baseline") or {}
    method = result.get("method") or {}
    rows = []
    for row in result.get("rows") or []:
        shown = _cells(row)
        n = f"{row['baseline_n']} / {row['new_n']}"
        cells = "".join(f"<td>{esc(c)}</td>" for c in [_where(row), *shown[:3], n, *shown[3:-1]])
        v = row["verdict"]
        rows.append(f'<tr class="compare-{esc(v)}">{cells}<td><span class="badge '
                    f'{_CLASS.get(v, "warn")}">{esc(v)}</span></td></tr>')
    skipped = "".join(f"<li>{esc(_skipped(s))}</li>" for s in result.get("not_compared") or [])
    n = len([r for r in result.get("rows") or [] if r.get("verdict") == "regression"])
    status = (f'<span class="badge bad">{esc(n)} regression(s)</span>' if n else
              '<span class="badge ok">no regression</span>')
    head = "".join(f"<th>{esc(c)}</th>" for c in ("where", *_COLUMNS[:3], "n", *_COLUMNS[3:]))
    return (f'<section id="compare-section"><p>{status} against baseline '
            f'<code>{esc(base.get("run_id"))}</code> ({esc(base.get("run_dir"))}, '
            f'{esc(base.get("calls"))} calls); {esc(method.get("resamples"))} bootstrap '
            f'resamples, seed {esc(method.get("seed"))}.</p>'
            f'<p class="muted">{esc(result.get("rule"))}</p>'
            f'<table class="compare"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}'
            "</tbody></table>"
            + (f'<p class="muted">Not compared:</p><ul>{skipped}</ul>' if skipped else "")
            + "</section>")
