"""The call, visually: inline SVG for report.html (no external assets, works from file://).

call_timeline_svg: one call's speech on the call clock, a lane of bars per side, and a row of
the graded moments of evaluation.metrics, each with a hover explanation (<title>) and its time
in data-t (seconds), which the report's script turns into a seek of the call's recording.
latency_histogram_svg: every response latency of the run, binned.

The recording's t=0 is the call clock's t=0: callers/session.py writes audio/<call_id>.wav with
place_on_timeline, which puts each 20 ms frame at sample t_ms * rate / 1000, where t_ms is the
same clock stamp the speech events and turns carry (sent frames: when handed to the transport;
received frames: arrival less the receive buffer). So a moment at t_ms plays at t_ms / 1000 s,
with no offset.
"""

from __future__ import annotations

import html
import math
from typing import Any

from evaluation.metrics import Finding, intervals, timeline_findings

TEXT_IN_TITLE = 80  # characters of a turn's transcript in its bar's hover text


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def nice_step(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is at least value (a tick or bin width)."""
    if not value > 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    return next(s * exp for s in (1, 2, 2.5, 5, 10) if value <= s * exp * (1 + 1e-9))


# --- one call's timeline -------------------------------------------------------------------

W, LEFT, RIGHT = 680, 62, 12
LANE = {"caller": 6, "agent": 26}  # y of each speaker's lane of bars
LANE_H = 14
SPAN_Y, POINT_Y = 48, 64  # the moments: spans (a latency, a silence) above points
AXIS_Y = 88
H = 94


def _moments(events: list[dict[str, Any]], findings: list[Finding]) -> list[dict[str, Any]]:
    """Each marker: {kind, t_ms, end_ms (spans) or None (points), title}."""
    out: list[dict[str, Any]] = []
    for f in findings:
        t, ms, s = f.t_ms, f.ms or 0.0, f.t_ms / 1000
        if f.kind == "response":
            out.append({"kind": "response", "t_ms": t, "end_ms": t + ms,
                        "title": f"response {ms:.0f} ms: the caller ended at {s:.1f} s, "
                                 f"the agent answered at {(t + ms) / 1000:.1f} s"})
        elif f.kind == "dead_air":
            out.append({"kind": "dead-air", "t_ms": t, "end_ms": t + ms,
                        "title": f"dead air {ms / 1000:.1f} s after the caller's turn at "
                                 f"{s:.1f} s"})
        elif f.kind == "barge_in":
            out.append({"kind": "barge-in", "t_ms": t, "end_ms": t + ms,
                        "title": f"barge-in at {s:.1f} s: the agent stopped after {ms:.0f} ms"})
            out.append({"kind": "stop", "t_ms": t + ms, "end_ms": None,
                        "title": f"the agent stopped {ms:.0f} ms after the barge-in"})
        elif f.kind == "barge_in_not_stopped":
            out.append({"kind": "barge-in-not-stopped", "t_ms": t, "end_ms": t + ms,
                        "title": f"barge-in at {s:.1f} s: the agent kept talking "
                                 f"{ms / 1000:.1f} s (not stopped)"})
        elif f.kind == "talk_over":
            out.append({"kind": "talk-over", "t_ms": t, "end_ms": None,
                        "title": f"talk-over at {s:.1f} s: the agent started while the "
                                 "caller spoke"})
        elif f.kind == "premature_cutoff":
            out.append({"kind": "premature-cutoff", "t_ms": t, "end_ms": None,
                        "title": f"premature cut-off at {s:.1f} s: the agent took the turn "
                                 "in the caller's pause"})
        elif f.kind == "false_yield":
            out.append({"kind": "false-yield", "t_ms": t, "end_ms": None,
                        "title": f"false yield at {s:.1f} s: the agent stopped at a "
                                 "backchannel"})
    for iv in intervals(events, "caller_speech_start", "caller_speech_end"):
        if iv.info.get("mode") == "backchannel":
            out.append({"kind": "backchannel", "t_ms": iv.start, "end_ms": None,
                        "title": f"backchannel at {iv.start / 1000:.1f} s"})
    for iv in intervals(events, "hesitation_start", "hesitation_end"):
        out.append({"kind": "hesitation", "t_ms": iv.start, "end_ms": iv.end,
                    "title": f"hesitation {iv.start / 1000:.1f}–{iv.end / 1000:.1f} s: the "
                             "caller pauses mid-answer on purpose"})
    return out


def call_timeline_svg(record: dict[str, Any], findings: list[Finding] | None = None) -> str:
    """Inline SVG of one call: caller and agent lanes, graded moments, a seconds axis."""
    events = [e for e in record.get("events") or [] if _finite(e.get("t_ms"))]
    if findings is None:
        findings = timeline_findings(events)
    turns = [t for t in record.get("turns") or []
             if _finite(t.get("start_ms")) and _finite(t.get("end_ms"))]
    moments = _moments(events, findings)
    if not turns and not moments:
        return ""
    duration = record.get("duration_s")
    total = max([float(duration) * 1000 if _finite(duration) else 0.0, 1.0]
                + [float(t["end_ms"]) for t in turns] + [float(e["t_ms"]) for e in events]
                + [m["end_ms"] or m["t_ms"] for m in moments])
    pw = W - LEFT - RIGHT

    def x(ms: float) -> float:
        return LEFT + max(0.0, min(ms, total)) / total * pw

    parts = [f'<svg class="tl" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
             'aria-label="the call on its clock: caller and agent speech, graded moments" '
             'xmlns="http://www.w3.org/2000/svg">']
    for who, y in LANE.items():
        parts.append(f'<text x="{LEFT - 6}" y="{y + 11}" text-anchor="end">{who}</text>')
    parts.append(f'<text x="{LEFT - 6}" y="{POINT_Y + 2}" text-anchor="end">moments</text>')
    step = nice_step(total / 1000 / 8)  # seconds between ticks: about eight of them
    for i in range(int(total / 1000 / step + 1e-9) + 1):
        sec = i * step
        xx = x(sec * 1000)
        parts.append(f'<line x1="{xx:.1f}" y1="2" x2="{xx:.1f}" y2="{AXIS_Y - 10}" '
                     f'class="grid"/><text x="{xx:.1f}" y="{AXIS_Y}" text-anchor="middle">'
                     f'{sec:g} s</text>')
    for t in turns:
        who = "agent" if t.get("speaker") == "agent" else "caller"
        start, end = float(t["start_ms"]), float(t["end_ms"])
        mode = t.get("mode") or "turn"
        text = str(t.get("text") or "")
        text = text if len(text) <= TEXT_IN_TITLE else text[:TEXT_IN_TITLE - 1] + "…"
        label = who if mode == "turn" else f"{who} ({str(mode).replace('_', '-')})"
        tip = f"{label} {start / 1000:.1f}–{end / 1000:.1f} s: {text}"
        width = max(1.5, x(end) - x(start))  # a short "mm-hmm" stays visible and clickable
        parts.append(f'<rect class="b {who}{" bc" if mode == "backchannel" else ""}" '
                     f'x="{x(start):.1f}" y="{LANE[who]}" width="{width:.1f}" '
                     f'height="{LANE_H}" data-t="{max(0.0, start) / 1000:.3f}">'
                     f'<title>{_esc(tip)}</title></rect>')
    spans = [m for m in moments if m["end_ms"] is not None]
    # Longest first, so shorter spans lie on top; dead air is drawn taller, around the
    # response that ended it, so both stay visible and hoverable.
    for m in sorted(spans, key=lambda m: (m["t_ms"] - m["end_ms"], m["kind"] != "dead-air")):
        x0 = x(m["t_ms"])
        tall = m["kind"] == "dead-air"
        parts.append(f'<rect class="mk {m["kind"]}" x="{x0:.1f}" y="{SPAN_Y - 3 * tall}" '
                     f'width="{max(3.0, x(m["end_ms"]) - x0):.1f}" height="{8 + 6 * tall}" '
                     f'data-t="{max(0.0, m["t_ms"]) / 1000:.3f}"><title>{_esc(m["title"])}'
                     '</title></rect>')
    # Backchannels first and wider: a false yield at the same moment lies on top, inside.
    for m in sorted(moments, key=lambda m: m["kind"] != "backchannel"):
        if m["end_ms"] is None:
            r = 6 if m["kind"] == "backchannel" else 4.5
            parts.append(f'<circle class="mk {m["kind"]}" cx="{x(m["t_ms"]):.1f}" '
                         f'cy="{POINT_Y}" r="{r}" data-t="{max(0.0, m["t_ms"]) / 1000:.3f}">'
                         f'<title>{_esc(m["title"])}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


TIMELINE_LEGEND = (
    '<p class="tl-legend muted">Each call\'s timeline: <span class="k b caller"></span>caller '
    '<span class="k b agent"></span>agent speech; moments: <span class="k response"></span>'
    'response latency <span class="k dead-air"></span>dead air <span class="k barge-in"></span>'
    'barge-in until the agent stopped <span class="k hesitation"></span>hesitation '
    '<span class="k talk-over"></span>talk-over, cut-off, not stopped '
    '<span class="k false-yield"></span>false yield <span class="k backchannel"></span>'
    'backchannel. Hover for what happened; click to play the recording from there.</p>')


# --- the run's response latencies ----------------------------------------------------------


def latency_bins(values: list[float], bins: int = 20) -> tuple[float, list[int], int]:
    """(bin width ms, counts of [i*w, (i+1)*w), count above the last bin).

    The bins reach the 99th percentile (nearest rank), so one 30 s outlier does not squash
    every other bar into the first; what lies beyond is one overflow bar."""
    data = sorted(values)
    top = data[max(0, math.ceil(0.99 * len(data)) - 1)] if data else 0.0
    width = nice_step(top / bins)
    n = max(1, math.floor(top / width) + 1)
    counts = [0] * n
    over = 0
    for v in data:
        i = int(v // width) if v >= 0 else 0
        if i < n:
            counts[i] += 1
        else:
            over += 1
    return width, counts, over


def latency_histogram_svg(values: list[float], lat: dict[str, Any] | None = None) -> str:
    """Inline SVG histogram of response latencies, with the run's p50 and p95 marked."""
    values = [float(v) for v in values if _finite(v)]
    if not values:
        return '<p class="muted">No response latency was measured.</p>'
    width, counts, over = latency_bins(values)
    w, h, left, right, top, bottom = 680, 240, 64, 20, 16, 44
    pw, ph = w - left - right, h - top - bottom
    bars = counts + ([over] if over else [])
    tick = next(s * 10 ** k for k in range(12) for s in (1, 2, 5)  # whole responses
                if s * 10 ** k * 4 >= max(bars) * 1.05)
    ymax = 4 * tick
    bw = pw / len(bars)

    def y(n: float) -> float:
        return top + ph - n / ymax * ph

    parts = [f'<svg class="plot hist" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
             'aria-label="response latency distribution" xmlns="http://www.w3.org/2000/svg">']
    for i in range(5):
        n = tick * i
        parts.append(f'<line x1="{left}" y1="{y(n):.1f}" x2="{left + pw}" y2="{y(n):.1f}" '
                     f'class="grid"/><text x="{left - 6}" y="{y(n) + 4:.1f}" '
                     f'text-anchor="end">{n:g}</text>')
    for i, n in enumerate(bars):
        lo = i * width
        label = (f"≥ {lo:g} ms" if i == len(counts) else f"{lo:g}–{lo + width:g} ms")
        parts.append(f'<rect class="hbar{" over" if i == len(counts) else ""}" '
                     f'x="{left + i * bw + 1:.1f}" y="{y(n):.1f}" width="{max(1.0, bw - 2):.1f}" '
                     f'height="{ph - (y(n) - top):.1f}" data-n="{n}"><title>{_esc(label)}: '
                     f'{n} response{"" if n == 1 else "s"}</title></rect>')
    every = max(1, math.ceil(len(bars) / 10))
    for i in range(0, len(bars) + 1, every):
        text = f"{i * width:g}" if i < len(bars) else ""
        parts.append(f'<text x="{left + i * bw:.1f}" y="{top + ph + 16}" '
                     f'text-anchor="middle">{text}</text>')
    scale_end = len(counts) * width  # the x scale ends where the overflow bar starts

    for key, cls in (("p50", "s-p50"), ("p95", "s-p95")):
        v = (lat or {}).get(key)
        if _finite(v) and v <= scale_end:
            xx = left + v / width * bw
            parts.append(f'<line x1="{xx:.1f}" y1="{top}" x2="{xx:.1f}" y2="{top + ph}" '
                         f'class="pline {cls}"><title>{key} {v:.0f} ms</title></line>'
                         f'<text x="{xx + 3:.1f}" y="{top + 10}" class="{cls}">{key}</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{h - 6}" text-anchor="middle" class="axis">'
                 f'response latency ms (bins of {width:g} ms)</text>')
    parts.append(f'<text x="14" y="{top + ph / 2}" text-anchor="middle" class="axis" '
                 f'transform="rotate(-90 14 {top + ph / 2})">responses</text>')
    parts.append("</svg>")
    return "".join(parts) + (f'<p class="muted">{len(values)} responses over all calls'
                             + (f"; {over} above {scale_end:g} ms in the last bar" if over else "")
                             + ".</p>")


CSS = """
.tl{display:block;margin:8px 0;max-width:100%;height:auto}
.tl text{font-size:11px;fill:#57606a}
.tl .grid{stroke:#eaeef2}
.tl [data-t]{cursor:pointer}
.tl [data-t]:hover{stroke:#1f2328;stroke-width:1.5}
.b.caller,.k.b.caller{fill:#8c959f;background:#8c959f}
.b.caller.bc{fill:#c6ccd2}
.b.agent,.k.b.agent{fill:#54aeff;background:#54aeff}
.mk.response,.k.response{fill:#0969da;background:#0969da}
.mk.dead-air,.k.dead-air{fill:#d0d7de;background:#d0d7de}
.mk.barge-in,.k.barge-in{fill:#bf8700;background:#bf8700}
.mk.stop{fill:#bf8700}
.mk.hesitation,.k.hesitation{fill:#8250df;background:#8250df}
.mk.talk-over,.mk.premature-cutoff,.mk.barge-in-not-stopped,.k.talk-over{
  fill:#cf222e;
  background:#cf222e;
}
.mk.false-yield,.k.false-yield{fill:#fb8f44;background:#fb8f44}
.mk.backchannel,.k.backchannel{fill:#fff;stroke:#6e7781;background:#c6ccd2}
.tl-legend .k{display:inline-block;width:12px;height:8px;margin:0 3px 0 10px}
.hist .hbar{fill:#54aeff}
.hist .hbar.over{fill:#cf222e}
.hist .pline{stroke-width:1.5;stroke-dasharray:4 3}
.hist .pline.s-p50{stroke:#0969da}
.hist .pline.s-p95{stroke:#cf222e}
.hist text.s-p50{fill:#0969da}
.hist text.s-p95{fill:#cf222e}
"""

# Clicking a bar or a moment seeks the call's own recording to that moment and plays it (the
# recording's t=0 is the call clock's: see the module docstring). play() may be refused (no
# user gesture, no audio device): the seek still stands.
JS = """
(function(){
  document.addEventListener('click',function(ev){
    var m=ev.target&&ev.target.closest?ev.target.closest('.tl [data-t]'):null;
    if(!m) return;
    var call=m.closest('.call'), a=call&&call.querySelector('audio');
    if(!a) return;
    a.currentTime=parseFloat(m.getAttribute('data-t'));
    var p=a.play(); if(p&&p.catch) p.catch(function(){});
  });
})();
"""
