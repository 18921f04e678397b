"""Draw a ``TimelineView`` (and the small plots around it) as self-contained SVG text.

The dashboard puts this text in an ``ipywidgets.HTML``; ``Journal.plot()`` and the HTML report embed it.
No plotting library: plain strings, so the core and the report need nothing beyond the standard library, a
redraw of a few thousand shapes takes milliseconds, and the browser test can find every bar in the DOM.

DOM contract (tests rely on it): the timeline is ``<svg class="jobsched-timeline-svg">``; each finished job
drawn on its own is ``<rect class="jobsched-bar" data-outcome="done|failed|timeout|cancelled|journal"
data-job="I" data-worker="W">`` with a ``<title>`` like ``job 12 · cost 3 · 0.41 s · worker 2 · done``; older
jobs summed per worker and time bucket are ``<rect class="jobsched-bucket" data-outcome=...>`` (the outcome
of most of them; ``data-jobs`` their number); a running job is ``<rect class="jobsched-running">``. At most
``MAX_SHAPES`` shapes are drawn whatever the number of jobs and workers.
"""

from __future__ import annotations

import html
import itertools
import math
import time
from collections.abc import Sequence

from .recorder import BUCKET_MS, NOT_RUN, OUTCOMES, Bucket, Span, TimelineView

MAX_SHAPES = 3_000  # bars + buckets + running bars
MAX_BARS = 1_500
COLOURS = {"done": "#4c9a2a", "failed": "#d62728", "timeout": "#ff7f0e", "cancelled": "#8c8c8c",
           "journal": "#1f77b4", "running": "#9ecae1"}
# What the legend calls an outcome: the words of the counts beside it (``data-outcome`` keeps the short names).
LEGEND = {"done": "succeeded", "journal": "from journal"}
_FONT = 'font-family="sans-serif" font-size="10"'


def _seconds(ms: float) -> str:
    s = ms / 1000.0
    if s < 1:
        return f"{s:.3f} s"
    if s < 100:
        return f"{s:.2f} s"
    return f"{s:.0f} s"


def _clock(ms: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000.0))


def _nice_step(span_ms: float, n: int = 6) -> float:
    raw = span_ms / n
    for step in (100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000,
                 900_000, 1_800_000, 3_600_000, 7_200_000, 21_600_000, 43_200_000, 86_400_000):
        if step >= raw:
            return float(step)
    return float(86_400_000 * math.ceil(raw / 86_400_000))


def lane_name(worker: int) -> str:
    return "w?" if worker == NOT_RUN else f"w{worker}"  # never ran (journal, cancelled while queued), or unknown


def render_timeline(view: TimelineView, width: int = 900, max_shapes: int = MAX_SHAPES,
                    max_bars: int = MAX_BARS, title: str = "") -> str:
    """Return the timeline as an ``<svg>``: a lane per worker, a bar per job, a time axis and a legend."""
    lanes = view.workers or (0,)
    n_lanes = len(lanes)
    lane_h = max(3.0, min(16.0, 480.0 / n_lanes))
    left, right, top = 44.0, 8.0, 16.0
    plot_w = max(50.0, width - left - right)
    height = top + n_lanes * lane_h + 22.0
    t0, t1 = view.start_ms, max(view.end_ms, view.start_ms + 1.0)
    scale = plot_w / (t1 - t0)
    row = {w: i for i, w in enumerate(lanes)}
    out: list[str] = [
        f'<svg class="jobsched-timeline-svg" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height:.0f}" viewBox="0 0 {width} {height:.0f}" style="background:#fff"><style>'
        + "".join(f'.jobsched-timeline-svg [data-outcome="{name}"]{{fill:{COLOURS[name]}}}' for name in OUTCOMES)
        + '.jobsched-timeline-svg .jobsched-bar{stroke:#fff;stroke-width:0.3}</style>']

    def x_of(ms: float) -> float:
        return left + (min(max(ms, t0), t1) - t0) * scale

    # lanes: alternate shading, and a label on every lane that has room
    label_every = max(1, math.ceil(11.0 / lane_h))
    for i, w in enumerate(lanes):
        y = top + i * lane_h
        if i % 2:
            out.append(f'<rect x="{left}" y="{y:.1f}" width="{plot_w:.1f}" height="{lane_h:.1f}" fill="#f4f4f4"/>')
        if i % label_every == 0:
            out.append(f'<text x="{left - 3}" y="{y + min(lane_h, 11) - 1:.1f}" text-anchor="end" {_FONT}>'
                       f'{lane_name(w)}</text>')
    n_jobs = 0  # the jobs drawn, one by one or summed in a bucket: what the legend counts
    # buckets: older jobs summed; merged further (k buckets in one) if there are too many to draw
    bars = list(view.spans)
    if len(bars) > max_bars:
        bars = sorted(bars, key=lambda s: s.stop_ms)[-max_bars:]
    budget = max(0, max_shapes - len(bars) - len(view.running))
    buckets = _merge_buckets(view.buckets, budget)
    pad = 0.5 if lane_h >= 4 else 0.0
    for b, span_ms in buckets:
        n = sum(b.counts)
        if not n or b.worker not in row:
            continue
        major = max(range(len(OUTCOMES)), key=lambda o: b.counts[o])
        outcome = OUTCOMES[major]
        x0, x1 = x_of(b.start_ms), x_of(b.start_ms + span_ms)
        if x1 <= x0:
            continue
        busy = min(1.0, b.busy_ms / span_ms)
        parts = ", ".join(f"{c} {OUTCOMES[o]}" for o, c in enumerate(b.counts) if c)
        y = top + row[b.worker] * lane_h + pad
        out.append(f'<rect class="jobsched-bucket" data-outcome="{outcome}" data-worker="{b.worker}" '
                   f'data-jobs="{n}" x="{x0:.1f}" y="{y:.1f}" width="{x1 - x0:.1f}" height="{lane_h - 2 * pad:.1f}" '
                   f'fill-opacity="{0.25 + 0.65 * busy:.2f}">'
                   f'<title>{lane_name(b.worker)} · {_clock(b.start_ms)}–{_clock(b.start_ms + span_ms)} · {n} jobs: '
                   f'{parts} · busy {busy:.0%}</title></rect>')
        n_jobs += n
    for s in bars:
        if s.worker not in row or s.stop_ms < t0:
            continue
        outcome = OUTCOMES[s.outcome]
        x0 = x_of(s.start_ms)
        bw = max(1.0, x_of(s.stop_ms) - x0)
        y = top + row[s.worker] * lane_h + pad
        out.append(f'<rect class="jobsched-bar" data-outcome="{outcome}" data-job="{s.job}" data-worker="{s.worker}" '
                   f'x="{x0:.1f}" y="{y:.1f}" width="{bw:.1f}" height="{lane_h - 2 * pad:.1f}" '
                   '>'
                   f'<title>job {s.job} · cost {s.cost:g} · {_seconds(s.stop_ms - s.start_ms)} · '
                   f'{lane_name(s.worker)} · {outcome}</title></rect>')
        n_jobs += 1
    for r in view.running:
        if r.worker not in row:
            continue
        x0 = x_of(r.start_ms)
        y = top + row[r.worker] * lane_h + pad
        cost = "" if r.cost is None else f" · cost {r.cost:g}"
        out.append(f'<rect class="jobsched-running" data-job="{r.job}" data-worker="{r.worker}" x="{x0:.1f}" '
                   f'y="{y:.1f}" width="{max(1.0, left + plot_w - x0):.1f}" height="{lane_h - 2 * pad:.1f}" '
                   f'fill="{COLOURS["running"]}" stroke="#3182bd" stroke-dasharray="3,2">'
                   f'<title>job {r.job}{cost} · running for {_seconds(view.end_ms - r.start_ms)} · '
                   f'{lane_name(r.worker)}</title></rect>')
        n_jobs += 1
    # the time axis
    y_axis = top + n_lanes * lane_h
    out.append(f'<line x1="{left}" y1="{y_axis:.1f}" x2="{left + plot_w:.1f}" y2="{y_axis:.1f}" stroke="#555"/>')
    step = _nice_step(t1 - t0)
    tick = math.ceil(t0 / step) * step
    while tick <= t1:
        x = x_of(tick)
        out.append(f'<line x1="{x:.1f}" y1="{y_axis:.1f}" x2="{x:.1f}" y2="{y_axis + 4:.1f}" stroke="#555"/>'
                   f'<text x="{x:.1f}" y="{y_axis + 14:.1f}" text-anchor="middle" {_FONT}>{_clock(tick)}</text>')
        tick += step
    # the legend (and the title)
    x = left
    if title:
        out.append(f'<text x="{x}" y="11" {_FONT} font-weight="bold">{html.escape(title)}</text>')
        x += 7 * len(title) + 12
    for name in (*OUTCOMES, "running"):
        label = LEGEND.get(name, name)
        out.append(f'<rect x="{x}" y="3" width="9" height="9" fill="{COLOURS[name]}"/>'
                   f'<text x="{x + 12}" y="11" {_FONT}>{label}</text>')
        x += 18 + 6 * len(label)
    out.append(f'<text x="{x + 4}" y="11" {_FONT} fill="#666">{n_jobs} job{"" if n_jobs == 1 else "s"} shown'
               f'{f" · {view.dropped} unrecorded" if view.dropped else ""}</text>')
    out.append("</svg>")
    return "".join(out)


def _merge_buckets(buckets: Sequence[Bucket], budget: int) -> list[tuple[Bucket, float]]:
    """Return ``(bucket, its width in ms)``, merging ``k`` consecutive buckets of a lane into one so that at
    most ``budget`` remain (the sums stay exact; only the time resolution drops)."""
    if not buckets or budget <= 0:
        return []
    width = max((b.width_ms for b in buckets), default=BUCKET_MS)
    k = max(1, math.ceil(len(buckets) / budget))
    merged: dict[tuple[int, int], list[float]] = {}
    for b in buckets:
        key = (b.worker, int(b.start_ms // (width * k)))
        m = merged.get(key)
        if m is None:
            m = merged[key] = [0.0] * (len(OUTCOMES) + 1)
        for o, c in enumerate(b.counts):
            m[o] += c
        m[-1] += b.busy_ms
    return [(Bucket(w, n * width * k, width * k, tuple(int(c) for c in m[:-1]), m[-1]), width * k)
            for (w, n), m in merged.items()][:budget]


def render_rate(samples: Sequence[tuple[float, int, int]], width: int = 260, height: int = 64) -> str:
    """Return a small ``<svg class="jobsched-throughput-svg">``: jobs/s and queue length over time.

    Args:
        samples: ``(seconds, jobs done, jobs queued)``, oldest first.
    """
    pad_l, pad_b = 4.0, 12.0
    h = height - pad_b - 10
    out = [f'<svg class="jobsched-throughput-svg" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" style="background:#fff">']
    rates: list[tuple[float, float]] = []
    for (ta, da, _), (tb, db, _) in itertools.pairwise(samples):
        if tb > ta:
            rates.append((tb, max(0.0, (db - da) / (tb - ta))))
    if len(samples) >= 2:
        ts0, ts1 = samples[0][0], max(samples[-1][0], samples[0][0] + 1e-9)
        max_rate = max((r for _, r in rates), default=0.0) or 1.0
        max_queue = max(q for _, _, q in samples) or 1

        def px(t: float) -> float:
            return pad_l + (t - ts0) / (ts1 - ts0) * (width - 2 * pad_l)

        def line(points: list[tuple[float, float]], top: float, cls: str, colour: str) -> str:
            pts = " ".join(f"{px(t):.1f},{10 + h - v / top * h:.1f}" for t, v in points)
            return f'<polyline class="{cls}" points="{pts}" fill="none" stroke="{colour}" stroke-width="1.5"/>'

        out.append(line([(t, float(q)) for t, _, q in samples], max_queue, "jobsched-queue-line", "#999"))
        if rates:
            out.append(line(rates, max_rate, "jobsched-rate-line", "#3182bd"))
        last_rate = rates[-1][1] if rates else 0.0
        out.append(f'<text x="{pad_l}" y="9" {_FONT} fill="#3182bd">jobs/s {last_rate:.1f} (max {max_rate:.1f})</text>'
                   f'<text x="{width - pad_l}" y="9" text-anchor="end" {_FONT} fill="#777">queued {samples[-1][2]}'
                   f'</text>'
                   f'<text x="{pad_l}" y="{height - 2}" {_FONT} fill="#777">last {ts1 - ts0:.0f} s</text>')
    else:
        out.append(f'<text x="{pad_l}" y="20" {_FONT} fill="#777">throughput: no data yet</text>')
    out.append("</svg>")
    return "".join(out)


def render_histogram(durations_ms: Sequence[float], width: int = 440, height: int = 160, bins: int = 30) -> str:
    """Return ``<svg class="jobsched-histogram-svg">``: how many jobs took how long (log-spaced bins)."""
    out = [f'<svg class="jobsched-histogram-svg" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" style="background:#fff">'
           f'<text x="4" y="11" {_FONT} font-weight="bold">job durations</text>']
    values = [max(d, 0.01) for d in durations_ms]
    if values:
        lo, hi = math.log10(min(values)), math.log10(max(values))
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        counts = [0] * bins
        for v in values:
            counts[min(bins - 1, int((math.log10(v) - lo) / (hi - lo) * bins))] += 1
        top, bottom, left = 16.0, height - 16.0, 30.0
        bw = (width - left - 6) / bins
        peak = max(counts)
        for i, c in enumerate(counts):
            if not c:
                continue
            bh = c / peak * (bottom - top)
            a, b = 10 ** (lo + i * (hi - lo) / bins), 10 ** (lo + (i + 1) * (hi - lo) / bins)
            out.append(f'<rect class="jobsched-histogram-bin" x="{left + i * bw:.1f}" y="{bottom - bh:.1f}" '
                       f'width="{max(1.0, bw - 1):.1f}" height="{bh:.1f}" fill="#4c9a2a">'
                       f'<title>{c} jobs took {_seconds(a)} – {_seconds(b)}</title></rect>')
        out.append(f'<text x="{left}" y="{height - 3}" {_FONT}>{_seconds(10 ** lo)}</text>'
                   f'<text x="{width - 6}" y="{height - 3}" text-anchor="end" {_FONT}>{_seconds(10 ** hi)}</text>'
                   f'<text x="{left - 3}" y="{top + 8}" text-anchor="end" {_FONT}>{peak}</text>')
    else:
        out.append(f'<text x="4" y="30" {_FONT}>no finished job</text>')
    out.append("</svg>")
    return "".join(out)


def render_failures(spans: Sequence[Span], start_ms: float, end_ms: float, width: int = 440, height: int = 160,
                    bins: int = 40) -> str:
    """Return ``<svg class="jobsched-failures-svg">``: failed, timed out and cancelled jobs per time bin."""
    out = [f'<svg class="jobsched-failures-svg" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" style="background:#fff">'
           f'<text x="4" y="11" {_FONT} font-weight="bold">failures over time</text>']
    bad = [s for s in spans if OUTCOMES[s.outcome] in ("failed", "timeout", "cancelled")]
    end_ms = max(end_ms, start_ms + 1.0)
    top, bottom, left = 16.0, height - 16.0, 30.0
    bw = (width - left - 6) / bins
    counts: list[dict[str, int]] = [{} for _ in range(bins)]
    for s in bad:
        i = min(bins - 1, max(0, int((s.stop_ms - start_ms) / (end_ms - start_ms) * bins)))
        name = OUTCOMES[s.outcome]
        counts[i][name] = counts[i].get(name, 0) + 1
    peak = max((sum(c.values()) for c in counts), default=0)
    for i, c in enumerate(counts):
        y = bottom
        for name in ("failed", "timeout", "cancelled"):
            n = c.get(name, 0)
            if not n:
                continue
            bh = n / peak * (bottom - top)
            y -= bh
            out.append(f'<rect class="jobsched-failure-bin" data-outcome="{name}" x="{left + i * bw:.1f}" y="{y:.1f}" '
                       f'width="{max(1.0, bw - 1):.1f}" height="{bh:.1f}" fill="{COLOURS[name]}">'
                       f'<title>{n} {name} by {_clock(start_ms + (i + 1) * (end_ms - start_ms) / bins)}</title></rect>')
    out.append(f'<line x1="{left}" y1="{bottom}" x2="{width - 6}" y2="{bottom}" stroke="#555"/>'
               f'<text x="{left}" y="{height - 3}" {_FONT}>{_clock(start_ms)}</text>'
               f'<text x="{width - 6}" y="{height - 3}" text-anchor="end" {_FONT}>{_clock(end_ms)}</text>'
               f'<text x="{left - 3}" y="{top + 8}" text-anchor="end" {_FONT}>{peak}</text>')
    if not bad:
        out.append(f'<text x="{left + 10}" y="40" {_FONT}>no failures</text>')
    out.append("</svg>")
    return "".join(out)


__all__ = ["COLOURS", "MAX_BARS", "MAX_SHAPES", "render_failures", "render_histogram", "render_rate",
           "render_timeline"]
