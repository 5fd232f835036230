"""report.html: one self-contained page (inline CSS, JS and SVG) that works from file://.

Sections: summary cards, gate results, latency vs concurrency (inline SVG), the distribution
of response latencies, understanding by entity, per persona, failure reasons, and a transcript
viewer for product managers: every call with its persona, outcome, a timeline of both sides'
speech and the graded moments (click to play the recording from there: report_visuals.py),
timed turns, flagged events and an audio player for the stereo recording (relative path
audio/<call_id>.wav), filterable by persona and outcome.
Every piece of text from a record is escaped.
"""

from __future__ import annotations

import html
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

from evaluation import report_visuals
from evaluation.metrics import timeline_findings
from evaluation.summary import generator_warnings, loss_pct, network_degraded

REPORT_FILE = "report.html"
MAX_CALLS = 5000  # transcript viewer cap; failed and flagged calls are listed first beyond it


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any, fmt: str = "{:.0f}", none: str = "–") -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return none
    return fmt.format(value)


def _pct(value: Any) -> str:
    return _num(value * 100 if isinstance(value, int | float) else None, "{:.1f}%")


def _sec(ms: Any) -> str:
    return _num(ms / 1000 if isinstance(ms, int | float) else None, "{:.1f}")


# --- flagged events of one call ------------------------------------------------------------


# How each graded moment of evaluation.metrics reads in the transcript viewer.
_FLAG_TEXT = {
    "barge_in": ("barge-in", "barge-in: the agent stopped after {ms:.0f} ms"),
    "barge_in_not_stopped": ("barge-in-not-stopped",
                             "barge-in: the agent kept talking {s:.1f} s (not stopped)"),
    "talk_over": ("talk-over", "talk-over: the agent started while the caller spoke"),
    "premature_cutoff": ("premature-cutoff",
                         "premature cut-off: the agent took the turn in a pause"),
    "false_yield": ("false-yield", "false yield: the agent stopped at a backchannel"),
    "dead_air": ("dead-air", "dead air: {s:.1f} s of silence"),
}


_BEHAVIOUR_TEXT = {
    "caller_silence": "caller stayed silent on purpose (does the agent re-prompt?)",
    "hesitation_start": "caller hesitates mid-answer (does the agent wait?)",
    "caller_correction": "caller corrects the read-back",
}


def call_flags(record: dict[str, Any]) -> list[dict[str, Any]]:
    """What a PM should look at in one call: [{kind, t_ms (None = whole call), text}].

    Timed flags are the graded moments of evaluation.metrics (the DESIGN.md definitions);
    misunderstood entities, the network loss of a lossy call with one, and the failure reason
    are call-level."""
    events = record.get("events") or []
    flags: list[dict[str, Any]] = []
    for f in timeline_findings(events):
        if f.kind in _FLAG_TEXT:
            kind, text = _FLAG_TEXT[f.kind]
            ms = f.ms or 0.0
            flags.append({"kind": kind, "t_ms": f.t_ms, "text": text.format(ms=ms, s=ms / 1000)})
    for e in events:
        kind = str(e.get("kind", ""))
        if "fallback" in kind:
            flags.append({"kind": "fallback", "t_ms": float(e["t_ms"]),
                          "text": kind.replace("_", " ")})
        elif kind in _BEHAVIOUR_TEXT:  # what the persona did on purpose, to read the agent by
            flags.append({"kind": "behaviour", "t_ms": float(e["t_ms"]),
                          "text": _BEHAVIOUR_TEXT[kind].format(**e)})
    u = record.get("understanding") or {}
    expected, understood = u.get("expected") or {}, u.get("understood") or {}
    for entity, ok in (u.get("correct") or {}).items():
        if not ok:
            heard = understood.get(entity)
            text = (f"misunderstood {entity}: expected {expected.get(entity, '?')!s}, "
                    f"understood {'nothing' if heard in (None, '') else heard}")
            flags.append({"kind": "misunderstood", "t_ms": None, "text": text})
    if not all((u.get("correct") or {}).values()) and network_degraded(record):
        # The facts above may have been lost on the line, not misheard by the agent.
        flags.append({"kind": "network-loss", "t_ms": None,
                      "text": f"network loss {round(loss_pct(record) or 0.0, 1):g} %"})
    if record.get("status") != "completed":
        reason = record.get("failure_reason") or "unknown"
        detail = record.get("failure_detail")
        text = f"failed: {reason}" + (f" ({detail})" if detail else "")
        flags.append({"kind": "failure", "t_ms": None, "text": text})
    return sorted(flags, key=lambda f: (f["t_ms"] is not None, f["t_ms"] or 0.0))


# --- pieces -------------------------------------------------------------------------------


def _card(label: str, value: str, sub: str = "", cls: str = "") -> str:
    return (f'<div class="card {cls}"><div class="label">{esc(label)}</div>'
            f'<div class="value">{esc(value)}</div><div class="sub">{esc(sub)}</div></div>')


def _cards(summary: dict[str, Any]) -> str:
    calls = summary.get("calls") or {}
    lat = summary.get("latency_ms") or {}
    und = summary.get("understanding") or {}
    comp = summary.get("completion") or {}
    barge = summary.get("barge_in_stop_ms") or {}
    knee = (summary.get("degradation") or {}).get("knee")
    hearing = summary.get("agent_hearing") or {}
    task = summary.get("task") or {}
    rate = comp.get("rate")
    if rate is None and calls.get("planned"):
        rate = calls.get("completed", 0) / calls["planned"]
    return '<section class="cards">' + "".join([
        _card("calls", f"{calls.get('completed', 0)} / {calls.get('planned', 0)}",
              f"completed / planned · {calls.get('failed', 0)} failed · "
              f"{calls.get('not_started', 0)} not started"),
        _card("completion", _pct(rate),
              f"n={comp.get('n', calls.get('planned', 0))} calls placed"
              + (f" · {comp['not_placed']} never placed" if comp.get("not_placed") else "")),
        _card("latency p50", _num(lat.get("p50"), "{:.0f} ms"), f"mean {_num(lat.get('mean'))} ms"),
        _card("latency p95", _num(lat.get("p95"), "{:.0f} ms"), f"n={lat.get('n', 0)}"),
        _card("latency p99", _num(lat.get("p99"), "{:.0f} ms"), f"n={lat.get('n', 0)}"),
        _card("task success", _pct(task.get("success_rate")),
              f"n={task.get('n', 0)} calls, by their scenario's criteria"),
        _card("understood (all facts)", _pct(und.get("all_correct_rate")),
              f"n={und.get('n', 0)} scored calls · {und.get('facts_observed', 0)} of "
              f"{und.get('facts_expected', 0)} facts observed"),
        *([_card("agent hearing WER", _pct(hearing.get("wer_mean")),
                 f"n={hearing.get('turns')} caller turns, by the agent's own transcripts")]
          if hearing.get("turns") else []),
        _card("barge-in stop p95", _num(barge.get("p95"), "{:.0f} ms"),
              f"n={barge.get('n', 0)} · not stopped {barge.get('not_stopped', 0)}"),
        _card("degradation knee", "none" if knee is None else f"{knee} callers",
              "first concurrency where quality breaks"),
        *_mos_card(summary.get("audio_quality") or {}),
    ]) + "</section>"


def _mos_card(block: dict[str, Any]) -> list[str]:
    """The agent's voice as heard: DNSMOS OVRL p5 (the worst calls), with median and PLCMOS."""
    ovrl, plc = block.get("ovrl") or {}, block.get("plcmos") or {}
    skipped = ", ".join(f"{k} {n}" for k, n in (block.get("skipped") or {}).items())
    if not ovrl.get("n") and not skipped:
        return []
    sub = (f"DNSMOS OVRL (1-5) · p50 {_num(ovrl.get('p50'), '{:.2f}')} · n={ovrl.get('n', 0)}"
           + (f" · PLCMOS p50 {_num(plc.get('p50'), '{:.2f}')} (n={plc['n']})"
              if plc.get("n") else "") + (f" · not scored: {skipped}" if skipped else ""))
    return [_card("agent voice MOS p5", _num(ovrl.get("p5"), "{:.2f}"), sub)]


def call_mos(record: dict[str, Any]) -> str:
    """One call's audio quality in a line: DNSMOS SIG/BAK/OVRL, PLCMOS, or why not scored."""
    block = record.get("audio_quality")
    if not isinstance(block, dict):
        return ""
    dns = block.get("dnsmos")
    if not isinstance(dns, dict):
        return f"audio quality not scored: {block.get('skipped') or 'unknown'}"
    plc = block.get("plcmos")
    return (f"agent voice MOS {_num(dns.get('ovrl'), '{:.2f}')} (DNSMOS OVRL; SIG "
            f"{_num(dns.get('sig'), '{:.2f}')}, BAK {_num(dns.get('bak'), '{:.2f}')})"
            + (f" · PLCMOS {_num(plc, '{:.2f}')}" if plc is not None else "")
            + f" · {_num(block.get('seconds_scored'), '{:.0f}')} s of agent speech scored")


def _gates(summary: dict[str, Any]) -> str:
    gates = summary.get("gates") or []
    if not gates:
        return '<p class="muted">No gates were evaluated.</p>'
    rows = []
    for g in gates:
        ok = bool(g.get("passed"))
        sign = "≤" if g.get("op") == "max" else "≥"
        value = g.get("value")
        rows.append(
            f'<tr class="{"pass" if ok else "fail"}"><td>{esc(g.get("name"))}</td>'
            f'<td>{esc(sign)} {esc(_num(g.get("threshold"), "{:g}"))}</td>'
            f'<td>{esc(_num(value, "{:g}", "no data"))}</td><td>{esc(g.get("n", ""))}</td>'
            f'<td><span class="badge {"ok" if ok else "bad"}">{"PASS" if ok else "FAIL"}</span>'
            f'</td><td class="muted">{esc(g.get("reason", ""))}</td></tr>')
    return ('<table class="gates"><thead><tr><th>gate</th><th>threshold</th><th>value</th>'
            '<th>n</th><th>result</th><th>why</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table>")


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


def latency_svg(curve: list[dict[str, Any]], knee: Any = None) -> str:
    """Inline SVG: p50/p95 latency (left axis) and completion (right axis) per concurrency."""
    w, h, left, right, top, bottom = 680, 300, 64, 64, 20, 44
    pw, ph = w - left - right, h - top - bottom
    points = [r for r in curve if isinstance(r.get("concurrency"), int | float)]
    if not points:
        return '<p class="muted">No calls: nothing to plot.</p>'
    xs = [float(r["concurrency"]) for r in points]
    lo, hi = min(xs), max(xs)
    ymax = _nice_max(max([float(r.get("latency_p95_ms") or 0) for r in points] + [1.0]) * 1.05)

    def x(c: float) -> float:
        return left + (pw / 2 if hi == lo else (c - lo) / (hi - lo) * pw)

    def y(ms: float) -> float:
        return top + ph - ms / ymax * ph

    def yr(rate: float) -> float:
        return top + ph - rate * ph

    parts = [f'<svg class="plot" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
             f'aria-label="latency and completion vs concurrency" '
             f'xmlns="http://www.w3.org/2000/svg">']
    for i in range(6):  # grid and left/right ticks
        ms = ymax * i / 5
        yy = y(ms)
        parts.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{left + pw}" y2="{yy:.1f}" '
                     f'class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{ms:.0f}</text>')
        parts.append(f'<text x="{left + pw + 6}" y="{yy + 4:.1f}">{i * 20}%</text>')
    levels = sorted(set(xs))
    step = max(1, math.ceil(len(levels) / 12))
    for c in levels[::step]:
        parts.append(f'<text x="{x(c):.1f}" y="{top + ph + 16}" text-anchor="middle">{c:g}</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{h - 6}" text-anchor="middle" class="axis">'
                 f'concurrent calls</text>')
    parts.append(f'<text x="14" y="{top + ph / 2}" text-anchor="middle" class="axis" '
                 f'transform="rotate(-90 14 {top + ph / 2})">latency ms</text>')
    parts.append(f'<text x="{w - 12}" y="{top + ph / 2}" text-anchor="middle" class="axis" '
                 f'transform="rotate(90 {w - 12} {top + ph / 2})">completion</text>')
    if isinstance(knee, int | float):
        kx = x(float(knee))
        parts.append(f'<line x1="{kx:.1f}" y1="{top}" x2="{kx:.1f}" y2="{top + ph}" '
                     f'class="knee"/><text x="{kx + 4:.1f}" y="{top + 12}" class="knee-label">'
                     f'knee {float(knee):g}</text>')

    def series(key: str, scale: Any, cls: str, label: str, fmt: str) -> None:
        pts = [(x(float(r["concurrency"])), scale(float(r[key])), r) for r in points
               if isinstance(r.get(key), int | float)]
        if len(pts) > 1:
            d = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in pts)
            parts.append(f'<polyline points="{d}" class="{cls}"/>')
        for px, py, r in pts:
            tip = f"{r['concurrency']} concurrent: {label} {fmt.format(r[key])}, n={r.get('calls')}"
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" class="{cls}">'
                         f'<title>{esc(tip)}</title></circle>')

    series("completion_rate", yr, "s-done", "completion", "{:.1%}")
    series("latency_p50_ms", y, "s-p50", "p50", "{:.0f} ms")
    series("latency_p95_ms", y, "s-p95", "p95", "{:.0f} ms")
    parts.append("</svg>")
    legend = ('<div class="legend"><span class="k s-p95"></span>p95 latency '
              '<span class="k s-p50"></span>p50 latency <span class="k s-done"></span>'
              'completion (right axis)</div>')
    return "".join(parts) + legend


def _degradation(summary: dict[str, Any]) -> str:
    deg = summary.get("degradation") or {}
    rows = {r.get("concurrency"): r for r in summary.get("by_concurrency") or []}
    curve = [{**r, **rows.get(r.get("concurrency"), {})} for r in deg.get("curve") or []]
    curve = curve or list(rows.values())
    knee = deg.get("knee")
    note = (f'<p class="bad-text">Knee at {esc(knee)} concurrent calls: {esc(deg.get("reason"))}'
            f'</p>' if knee is not None else
            '<p class="muted">No knee: p95 latency stayed within 2x and completion within 5 '
            'points of the lowest concurrency level.</p>')
    out = latency_svg(curve, knee) + note
    mos = [r for r in rows.values() if r.get("mos_n")]
    if mos:
        cells = "".join(f"<tr><td>{esc(r.get('concurrency'))}</td>"
                        f"<td>{esc(_num(r.get('mos_ovrl_p5'), '{:.2f}'))}</td>"
                        f"<td>{esc(_num(r.get('mos_ovrl_p50'), '{:.2f}'))}</td>"
                        f"<td>{esc(r.get('mos_n'))}</td></tr>" for r in mos)
        out += ("<h3>Agent voice MOS (DNSMOS OVRL) by concurrency</h3><table><tr>"
                "<th>concurrency</th><th>p5</th><th>p50</th><th>n</th></tr>" + cells + "</table>")
    phases = deg.get("by_phase") or {}
    if phases:
        items = "".join(
            f"<li><b>{esc(name)}</b>: knee "
            f"{esc('none' if p.get('knee') is None else p.get('knee'))}"
            f"{esc(': ' + p['reason'] if p.get('reason') else '')}</li>"
            for name, p in phases.items())
        out += f"<h3>By load phase</h3><ul>{items}</ul>" + _slices(summary.get("by_phase") or {},
                                                                  "phase")
    return out


def _latency_histogram(summary: dict[str, Any], records: list[dict[str, Any]]) -> str:
    """Every response latency of every call (all records, not only those listed below)."""
    values = [v for r in records for v in (r.get("metrics") or {}).get("response_latency_ms")
              or [] if isinstance(v, int | float) and not isinstance(v, bool)]
    return report_visuals.latency_histogram_svg(values, summary.get("latency_ms"))


def _understanding(summary: dict[str, Any]) -> str:
    by_entity = (summary.get("understanding") or {}).get("by_entity") or {}
    if not by_entity:
        return '<p class="muted">No call was scored for understanding.</p>'
    thresholds = {g.get("name"): g for g in summary.get("gates") or []}
    rows = []
    for name, block in by_entity.items():
        rate = block.get("rate")
        gate = thresholds.get(f"understanding.{name}")
        bad = gate is not None and not gate.get("passed")
        width = 0 if rate is None else max(0.0, min(1.0, rate)) * 100
        rows.append(
            f'<div class="bar-row"><span class="bar-name">{esc(name)}</span>'
            f'<span class="bar"><span class="fill {"bad" if bad else ""}" '
            f'style="width:{width:.1f}%"></span></span>'
            f'<span class="bar-val">{esc(_pct(rate))} <span class="muted">n={esc(block.get("n"))}'
            f'{_unobserved_note(block)}</span></span></div>')
    return ('<div class="bars">' + "".join(rows) + "</div>"
            '<p class="muted">Rates are over observed facts: those the agent reported in its '
            'state or read back. A fact it never confirmed is not observed, not wrong.</p>'
            + _network_note(summary))


def _network_note(summary: dict[str, Any]) -> str:
    """The attribution's sentence, only when some call was lossy (else it has nothing to say)."""
    block = (summary.get("understanding") or {}).get("network_attribution") or {}
    if not (block.get("lossy") or {}).get("calls"):
        return ""
    cls = "bad-text" if block.get("attributed") else "muted"
    return f'<p class="{cls} network-attribution">{esc(block.get("verdict"))}</p>'


def _unobserved_note(block: dict[str, Any]) -> str:
    unseen = block.get("not_observed") or 0
    return f" · not observed in {esc(unseen)} of {esc(block.get('expected'))}" if unseen else ""


def _slices(groups: dict[str, Any], label: str) -> str:
    if not groups:
        return ""
    rows = "".join(
        f"<tr><td>{esc(name)}</td><td>{esc(g.get('calls'))}</td>"
        f"<td>{esc(_pct(g.get('completion_rate')))}</td>"
        f"<td>{esc(_num((g.get('latency_ms') or {}).get('p50')))}</td>"
        f"<td>{esc(_num((g.get('latency_ms') or {}).get('p95')))}</td>"
        f"<td>{esc(_num((g.get('latency_ms') or {}).get('p99')))}</td>"
        f"<td>{esc((g.get('latency_ms') or {}).get('n'))}</td>"
        f"<td>{esc(_pct((g.get('understanding') or {}).get('all_correct_rate')))}</td>"
        f"<td>{esc(_pct(g.get('task_success_rate')))}</td></tr>"
        for name, g in groups.items())
    return (f'<table><thead><tr><th>{esc(label)}</th><th>calls</th><th>completion</th>'
            '<th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>latency n</th>'
            '<th>understood (all)</th><th>task success</th></tr></thead>'
            f'<tbody>{rows}</tbody></table>')


def _failed_checks(summary: dict[str, Any]) -> str:
    failed = (summary.get("task") or {}).get("failed_checks") or {}
    if not failed:
        return ""
    items = "".join(f"<li>{esc(name)}: {esc(n)} calls</li>" for name, n in failed.items())
    return f'<p class="muted">Success checks that failed:</p><ul>{items}</ul>'


def _failures(summary: dict[str, Any]) -> str:
    reasons = (summary.get("calls") or {}).get("failure_reasons") or {}
    if not reasons:
        return '<p class="muted">No call failed.</p>'
    rows = "".join(f"<tr><td>{esc(r)}</td><td>{esc(n)}</td></tr>"
                   for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    return ("<table><thead><tr><th>reason</th><th>calls</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def _audio_src(record: dict[str, Any], run_dir: Path | None) -> str | None:
    """The recording's path relative to report.html, or None when there is none on disk."""
    audio = record.get("audio")
    if not audio:
        return None
    path = Path(str(audio))
    if run_dir is not None:
        full = path if path.is_absolute() else run_dir / path
        if not full.is_file():
            return None
        try:
            path = full.resolve().relative_to(run_dir.resolve())
        except ValueError:
            path = Path(os.path.relpath(full.resolve(), run_dir.resolve()))
    return quote(path.as_posix())


def _latency_after(record: dict[str, Any]) -> dict[int, float]:
    """Agent turn index -> time from the caller's turn end (CTE event if any) to its start."""
    ctes = sorted(float(e["t_ms"]) for e in record.get("events") or []
                  if e.get("kind") == "caller_turn_end" and isinstance(e.get("t_ms"), int | float))
    turns = record.get("turns") or []
    out: dict[int, float] = {}
    for i in range(1, len(turns)):
        prev, turn = turns[i - 1], turns[i]
        start, prev_start = turn.get("start_ms"), prev.get("start_ms")
        if turn.get("speaker") != "agent" or prev.get("speaker") != "caller":
            continue
        if not isinstance(start, int | float) or not isinstance(prev_start, int | float):
            continue
        inside = [c for c in ctes if prev_start <= c <= start]
        cte = inside[-1] if inside else prev.get("end_ms")
        if isinstance(cte, int | float) and start >= cte:
            out[i] = start - cte
    return out


def _turn_text(turn: dict, speaker: str, unheard: bool, esc) -> str:
    text = turn.get("text") or ""
    if not text and unheard and speaker == "agent":  # not silence: nobody transcribed it
        return '<span class="muted">(not transcribed: speech.stt none)</span>'
    return esc(text)


def _facts_table(u: dict[str, Any]) -> str:
    """Each graded fact: expected, what the agent understood and from which source, or that
    nothing showed it (not observed: neither right nor wrong)."""
    if not u.get("expected"):
        return ""
    correct, understood = u.get("correct") or {}, u.get("understood") or {}
    sources = u.get("sources") or {}
    cells = []
    for k, v in u["expected"].items():
        if k not in correct:
            cells.append(f'<tr class="unobserved"><td>{esc(k)}</td><td>{esc(v)}</td>'
                         '<td class="muted">not observed</td><td>–</td></tr>')
            continue
        source = sources.get(k, u.get("source", ""))
        cells.append(f'<tr class="{"pass" if correct[k] else "fail"}"><td>{esc(k)}</td>'
                     f"<td>{esc(v)}</td><td>{esc(understood.get(k, ''))} "
                     f'<span class="muted">({esc(source)})</span></td>'
                     f"<td>{'✓' if correct[k] else '✗'}</td></tr>")
    return ('<table class="facts"><thead><tr><th>fact</th><th>expected</th>'
            '<th>understood (source)</th><th></th></tr></thead>'
            f'<tbody>{"".join(cells)}</tbody></table>')


def _hearing_table(record: dict[str, Any]) -> str:
    """What the agent reported hearing of each caller turn (its own transcripts), with WER."""
    rows = (record.get("metrics") or {}).get("agent_hearing") or []
    if not rows:
        return ""
    cells = "".join(
        f"<tr><td>{esc(_sec(r.get('start_ms')))} s</td><td>{esc(r.get('said', ''))}</td>"
        f"<td>{esc(r.get('heard', '')) or '<span class=muted>nothing</span>'}</td>"
        f"<td>{esc(_num(r.get('wer'), '{:.0%}'))}</td></tr>" for r in rows)
    return ('<table class="facts hearing"><thead><tr><th>caller turn</th><th>said</th>'
            '<th>the agent heard (its transcript)</th><th>WER</th></tr></thead>'
            f"<tbody>{cells}</tbody></table>")


def _call(record: dict[str, Any], run_dir: Path | None) -> str:
    call_id = str(record.get("call_id") or "?")
    persona = str(record.get("persona") or "unknown")
    completed = record.get("status") == "completed"
    outcome = "completed" if completed else "failed"
    reason = "" if completed else str(record.get("failure_reason") or "unknown")
    flags = call_flags(record)
    lat = [v for v in (record.get("metrics") or {}).get("response_latency_ms") or []
           if isinstance(v, int | float)]
    median = sorted(lat)[len(lat) // 2] if lat else None
    kinds = Counter(f["kind"] for f in flags if f["kind"] != "failure")
    chips = "".join(f'<span class="chip {esc(k)}">{esc(k)}{f" ×{n}" if n > 1 else ""}</span>'
                    for k, n in kinds.items())
    head = (f'<summary><span class="cid">{esc(call_id)}</span>'
            f'<span class="persona">{esc(persona)}</span>'
            f'<span class="badge {"ok" if completed else "bad"}">'
            f'{esc(outcome if completed else "failed: " + reason)}</span>'
            f'<span class="muted">{esc(_num(record.get("duration_s"), "{:.0f} s"))} · median '
            f'latency {esc(_num(median, "{:.0f} ms"))}</span>{chips}</summary>')
    src = _audio_src(record, run_dir)
    audio = (f'<audio controls preload="metadata" src="{esc(src)}"></audio>'
             '<span class="muted"> left: caller as sent · right: agent as received</span>'
             if src else '<p class="muted">No recording for this call.</p>')
    facts = _facts_table(record.get("understanding") or {}) + _hearing_table(record)
    mos = call_mos(record)
    if mos:
        facts = f'<p class="muted mos">{esc(mos)}</p>' + facts
    agent_id = (record.get("transport") or {}).get("agent_call_id")
    if agent_id:
        facts += f'<p class="muted">agent call id: <code>{esc(agent_id)}</code></p>'
    call_level = "".join(f'<li class="flag {esc(f["kind"])}">{esc(f["text"])}</li>'
                         for f in flags if f["t_ms"] is None)
    timed = [(f["t_ms"], 1, f) for f in flags if f["t_ms"] is not None]
    latency_after = _latency_after(record)
    rows: list[tuple[float, int, Any]] = []
    for i, turn in enumerate(record.get("turns") or []):
        start = turn.get("start_ms")
        rows.append((float(start) if isinstance(start, int | float) else 0.0, 0, (i, turn)))
    lines = []
    unheard = (record.get("speech") or {}).get("stt") == "none"  # speech: {stt: none}
    for _, kind, item in sorted(rows + timed, key=lambda r: (r[0], r[1])):
        if kind == 1:
            lines.append(f'<li class="flag {esc(item["kind"])}"><span class="t">'
                         f'{esc(_sec(item["t_ms"]))} s</span>⚑ {esc(item["text"])}</li>')
            continue
        i, turn = item
        speaker = "agent" if turn.get("speaker") == "agent" else "caller"
        mode = turn.get("mode") or "turn"
        who = speaker if mode == "turn" else f"{speaker} ({mode.replace('_', '-')})"
        after = latency_after.get(i)
        gap = (f'<span class="gap">answered after {after / 1000:.1f} s</span>'
               if after is not None else "")
        lines.append(
            f'<li class="turn {speaker}"><span class="t">{esc(_sec(turn.get("start_ms")))}–'
            f'{esc(_sec(turn.get("end_ms")))} s</span><span class="who">{esc(who)}</span>'
            f'<span class="text">{_turn_text(turn, speaker, unheard, esc)}</span>{gap}</li>')
    body = (f'<div class="call-body">{audio}{report_visuals.call_timeline_svg(record)}{facts}'
            f'{f"<ul class=flags>{call_level}</ul>" if call_level else ""}'
            f'<ol class="timeline">{"".join(lines) or "<li class=muted>No turns.</li>"}</ol></div>')
    return (f'<details class="call" id="{esc("call-" + call_id)}" data-call-id="{esc(call_id)}" '
            f'data-persona="{esc(persona)}" data-outcome="{outcome}" data-reason="{esc(reason)}" '
            f'data-flagged="{1 if flags else 0}">{head}{body}</details>')


def _select(name: str, label: str, options: list[tuple[str, str]]) -> str:
    opts = "".join(f'<option value="{esc(v)}">{esc(t)}</option>' for v, t in options)
    return f'<label>{esc(label)} <select id="{name}" name="{name}">{opts}</select></label>'


def _viewer(records: list[dict[str, Any]], run_dir: Path | None, max_calls: int) -> str:
    listed = records
    note = ""
    if len(records) > max_calls:
        # Beyond the cap, what needs a human's attention comes first: failures, then flags.
        ranked = sorted(range(len(records)), key=lambda i: (
            records[i].get("status") == "completed", not call_flags(records[i]), i))
        keep = sorted(ranked[:max_calls])
        listed = [records[i] for i in keep]
        note = (f'<p class="bad-text">Listing {max_calls} of {len(records)} calls (failed and '
                f'flagged calls first); calls.jsonl has them all.</p>')
    personas = sorted({str(r.get("persona") or "unknown") for r in listed})
    reasons = sorted({str(r.get("failure_reason") or "unknown") for r in listed
                      if r.get("status") != "completed"})
    outcomes = [("", "all"), ("completed", "completed"), ("failed", "failed (any reason)")]
    outcomes += [(f"failed:{r}", f"failed: {r}") for r in reasons]
    filters = (
        '<div class="filters">'
        + _select("persona-filter", "Persona", [("", "all")] + [(p, p) for p in personas])
        + _select("outcome-filter", "Outcome", outcomes)
        + '<label><input type="checkbox" id="flagged-filter"> only calls with flags</label>'
        + f'<span id="shown-count" class="muted">{len(listed)} of {len(listed)} calls</span>'
        + '</div>')
    calls = "".join(_call(r, run_dir) for r in listed)
    return f'{note}{filters}{report_visuals.TIMELINE_LEGEND}<div id="calls">{calls}</div>'


CSS = """
:root{--ok:#1a7f37;--bad:#cf222e;--muted:#6e7781;--line:#d0d7de;--bg:#f6f8fa;--acc:#0969da}
*{box-sizing:border-box}
body{
  font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;
  margin:0;
  color:#1f2328;
  background:#fff;
}
header{padding:18px 28px;border-bottom:1px solid var(--line);background:var(--bg)}
h1{margin:0 0 4px;font-size:20px}
h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:15px}
main{padding:0 28px 40px;max-width:1200px}
.muted{color:var(--muted)}
.bad-text{color:var(--bad)}
.cards{
  display:grid;
  grid-template-columns:repeat(auto-fill,minmax(165px,1fr));
  gap:10px;
  margin-top:18px;
}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 12px;background:#fff}
.card .label{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.03em}
.card .value{font-size:22px;font-weight:600}
.card .sub{color:var(--muted);font-size:12px}
table{border-collapse:collapse;margin:6px 0}
th,td{border-bottom:1px solid var(--line);padding:4px 10px;text-align:left;vertical-align:top}
th{background:var(--bg);font-weight:600}
tr.fail td:first-child{border-left:3px solid var(--bad)}
tr.pass td:first-child{border-left:3px solid var(--ok)}
tr.unobserved td:first-child{border-left:3px dashed var(--muted)}
.badge{
  display:inline-block;
  padding:1px 8px;
  border-radius:10px;
  font-size:12px;
  font-weight:600;
  color:#fff;
}
.badge.ok{background:var(--ok)}
.badge.bad{background:var(--bad)}
.badge.warn{background:#9a6700}
tr.compare-regression td:first-child{border-left:3px solid var(--bad)}
.status{font-size:15px;margin-top:6px}
.plot text{font-size:11px;fill:#57606a}
.plot .axis{font-size:12px;fill:#1f2328}
.plot .grid{stroke:#eaeef2}
.plot polyline{fill:none;stroke-width:2}
.plot .knee{stroke:var(--bad);stroke-dasharray:4 3}
.plot .knee-label{fill:var(--bad)}
polyline.s-p95{stroke:#cf222e}
circle.s-p95{fill:#cf222e}
polyline.s-p50{stroke:#0969da}
circle.s-p50{fill:#0969da}
polyline.s-done{stroke:#1a7f37;stroke-dasharray:5 3}
circle.s-done{fill:#1a7f37}
.legend .k{display:inline-block;width:14px;height:4px;margin:0 4px 2px 12px}
.legend .s-p95{background:#cf222e}
.legend .s-p50{background:#0969da}
.legend .s-done{background:#1a7f37}
.bar-row{display:flex;align-items:center;gap:10px;margin:4px 0}
.bar-name{width:140px}
.bar{flex:0 0 360px;height:14px;background:#eaeef2;border-radius:7px;overflow:hidden}
.fill{display:block;height:100%;background:var(--ok)}
.fill.bad{background:var(--bad)}
.filters{
  display:flex;
  gap:18px;
  align-items:center;
  flex-wrap:wrap;
  padding:10px;
  background:var(--bg);
  border:1px solid var(--line);
  border-radius:8px;
  margin-bottom:10px;
  position:sticky;
  top:0;
  z-index:1;
}
.call{border:1px solid var(--line);border-radius:8px;margin:6px 0;background:#fff}
.call[hidden]{display:none}
.call summary{
  cursor:pointer;
  padding:8px 12px;
  display:flex;
  gap:12px;
  align-items:center;
  flex-wrap:wrap;
}
.call[open] summary{border-bottom:1px solid var(--line);background:var(--bg)}
.cid{font-family:ui-monospace,monospace;font-size:13px}
.persona{font-weight:600}
.chip{
  font-size:11px;
  padding:1px 6px;
  border-radius:9px;
  background:#fff1e5;
  color:#953800;
  border:1px solid #ffd8b5;
}
.chip.misunderstood,.chip.barge-in-not-stopped{
  background:#ffebe9;
  color:var(--bad);
  border-color:#ffcecb;
}
.call-body{padding:10px 14px}
audio{width:420px;max-width:100%;vertical-align:middle}
.timeline{list-style:none;padding:0;margin:10px 0}
.timeline li{padding:4px 8px;margin:3px 0;border-radius:6px;display:flex;gap:10px}
.turn.agent{background:#ddf4ff}
.turn.caller{background:#f6f8fa;margin-left:40px}
.t{
  font-family:ui-monospace,monospace;
  font-size:12px;
  color:var(--muted);
  white-space:nowrap;
  min-width:96px;
}
.who{font-weight:600;min-width:46px}
.text{flex:1}
.gap{font-size:12px;color:var(--muted);white-space:nowrap}
li.flag{color:#953800;background:#fff8c5}
li.flag.misunderstood,li.flag.failure,li.flag.barge-in-not-stopped{
  color:var(--bad);
  background:#ffebe9;
}
ul.flags{padding-left:18px}
.facts td,.facts th{padding:2px 10px}
"""

JS = """
(function(){
  var persona=document.getElementById('persona-filter');
  var outcome=document.getElementById('outcome-filter');
  var flagged=document.getElementById('flagged-filter');
  var count=document.getElementById('shown-count');
  var calls=Array.prototype.slice.call(document.querySelectorAll('#calls .call'));
  function matches(el){
    var p=persona.value, o=outcome.value;
    if(p && el.dataset.persona!==p) return false;
    if(o==='completed' && el.dataset.outcome!=='completed') return false;
    if(o==='failed' && el.dataset.outcome!=='failed') return false;
    if(o.indexOf('failed:')===0 && (el.dataset.outcome!=='failed' ||
       el.dataset.reason!==o.slice(7))) return false;
    if(flagged.checked && el.dataset.flagged!=='1') return false;
    return true;
  }
  function apply(){
    var shown=0;
    calls.forEach(function(el){var ok=matches(el); el.hidden=!ok; if(ok) shown++;});
    count.textContent=shown+' of '+calls.length+' calls';
  }
  [persona,outcome,flagged].forEach(function(el){el.addEventListener('change',apply);});
  window.callfleetApplyFilters=apply;
  if(location.hash){var el=document.getElementById(location.hash.slice(1)); if(el) el.open=true;}
  apply();
})();
"""


def render_report(summary: dict[str, Any], records: list[dict[str, Any]],
                  run_dir: Path | None = None, *, max_calls: int = MAX_CALLS,
                  compare: dict[str, Any] | None = None) -> str:
    """The whole report as one HTML string; `compare` (default: run_dir/compare.json when there
    is one) adds the baseline comparison."""
    from evaluation.compare import html_section, read_compare

    compare = compare if compare is not None else read_compare(run_dir)
    compared = ('<h2 id="compare">Compared with the baseline</h2>' + html_section(compare, esc)
                if compare is not None else "")
    gates = summary.get("gates") or []
    passed = all(g.get("passed") for g in gates)
    status = ("no gates evaluated" if not gates else
              f"all {len(gates)} gates passed" if passed else
              f"{sum(1 for g in gates if not g.get('passed'))} of {len(gates)} gates FAILED")
    warnings = []
    if summary.get("partial"):
        warnings.append("Partial run: not every planned call finished.")
    warnings += [f"{w[0].upper()}{w[1:]}." for w in generator_warnings(summary)]
    warn = "".join(f'<p class="bad-text">⚠ {esc(w)}</p>' for w in warnings)
    title = f"callfleet run {summary.get('run_id', '')}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><style>{CSS}{report_visuals.CSS}</style></head>
<body><header><h1>{esc(title)}</h1>
<div class="muted">target {esc(summary.get("target", ""))}</div>
<div class="status"><span class="badge {"ok" if passed else "bad"}">{esc(status)}</span></div>
{warn}</header><main>
{_cards(summary)}
<h2 id="gates">Gates</h2>{_gates(summary)}
{compared}
<h2 id="degradation">Latency and completion vs concurrency</h2>{_degradation(summary)}
<h2 id="latency">Response latency distribution</h2>{_latency_histogram(summary, records)}
<h2 id="understanding">Understanding by entity</h2>{_understanding(summary)}
<h2 id="scenarios">By scenario</h2>{_slices(summary.get("by_scenario") or {}, "scenario")
    or '<p class="muted">No calls.</p>'}{_failed_checks(summary)}
<h2 id="personas">By persona</h2>{_slices(summary.get("by_persona") or {}, "persona")
    or '<p class="muted">No calls.</p>'}
<h2 id="failures">Failure reasons</h2>{_failures(summary)}
<h2 id="transcripts">Calls and transcripts</h2>{_viewer(records, run_dir, max_calls)}
</main><script>{JS}{report_visuals.JS}</script></body></html>
"""


def write_report(run_dir: Path, summary: dict[str, Any], records: list[dict[str, Any]],
                 *, max_calls: int = MAX_CALLS) -> Path:
    """Write run_dir/report.html (atomically) and return its path."""
    run_dir = Path(run_dir)
    path = run_dir / REPORT_FILE
    tmp = path.with_name(f".{REPORT_FILE}.tmp")
    tmp.write_text(render_report(summary, records, run_dir, max_calls=max_calls),
                   encoding="utf-8")
    os.replace(tmp, path)
    return path
