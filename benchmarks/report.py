"""The report of ``benchmarks/run.py``: issue 5's targets, and the results as a Markdown table.

Pure functions of a results file (the JSON that ``run.py --json`` writes), so that
``notebooks/benchmarks.ipynb`` shows the same report as the command line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scenarios import LABELS, Sizes  # a sibling module: benchmarks/ is on sys.path


def _get(results: dict[str, Any], scenario: str, peer: str, key: str) -> float | None:
    value = results.get(scenario, {}).get(peer, {}).get("median", {}).get(key)
    return float(value) if value is not None else None


def evaluate(results: dict[str, Any], sizes: Sizes) -> list[dict[str, Any]]:
    """Check issue 5's targets against the peers of this run."""
    targets: list[dict[str, Any]] = []

    def ratio(name: str, num: tuple[str, str, str], den: tuple[str, str, str], op: str, bound: float,
              factor: float = 1.0) -> None:
        a, b = _get(results, *num), _get(results, *den)
        if a is None or b is None or b == 0:
            return
        r = a / (b * factor)
        met = r >= bound if op == ">=" else r <= bound
        targets.append({"target": name, "value": r, "bound": f"{op} {bound:g}", "met": met,
                        "detail": f"{num[1]} {a:.4g} / {den[1]} {b:.4g}"})

    tp, rt, cs, sc = "throughput", "roundtrip", "cold_start", "scale"
    # Default mode, through each API: submit() futures, and the manual's add_job + after_stop loop.
    for peer, api in (("jobsched", "submit"), ("jobsched_manual", "add_job")):
        ratio(f"default throughput ({api}) / floor1", (tp, peer, "jobs_per_s"), (tp, "floor1", "jobs_per_s"),
              ">=", 0.8)
        ratio(f"default throughput ({api}) / ProcessPoolExecutor fork", (tp, peer, "jobs_per_s"),
              (tp, "ppe_fork", "jobs_per_s"), ">=", 2.5)
        ratio(f"default throughput ({api}) / ProcessPoolExecutor spawn", (tp, peer, "jobs_per_s"),
              (tp, "ppe_spawn", "jobs_per_s"), ">=", 2.5)
    for peer, api in (("jobsched", "submit"), ("jobsched_manual", "add_job + start")):
        ratio(f"median round trip ({api}) / floor1", (rt, peer, "median_us"), (rt, "floor1", "median_us"), "<=", 1.3)
    for peer, api in (("jobsched_prefetch2", "submit"), ("jobsched_manual_prefetch2", "add_job")):
        ratio(f"prefetch=2 throughput ({api}) / Pool.imap_unordered", (tp, peer, "jobs_per_s"),
              (tp, "mp_pool", "jobs_per_s"), ">=", 1.0)
        ratio(f"prefetch=2 throughput ({api}) / floor2", (tp, peer, "jobs_per_s"), (tp, "floor2", "jobs_per_s"),
              ">=", 0.7)
    ratio("cold start / floor1", (cs, "jobsched", "seconds"), (cs, "floor1", "seconds"), "<=", 1.5)
    ratio("cold start / ProcessPoolExecutor spawn", (cs, "jobsched", "seconds"), (cs, "ppe_spawn", "seconds"),
          "<", 1.0)
    ratio(f"{sizes.scale_workers} workers x {sizes.scale_n} jobs / floor1", (sc, "jobsched", "seconds"),
          (sc, "floor1", "seconds"), "<=", 1.5)
    for peer, api in (("jobsched", "submit"), ("jobsched_manual", "add_job")):
        eff = _get(results, "efficiency", peer, "efficiency")
        floor_eff = _get(results, "efficiency", "floor1", "efficiency")
        if eff is not None:
            targets.append({"target": f"efficiency ({api})", "value": eff, "bound": ">= 0.97", "met": eff >= 0.97,
                            "detail": f"{sizes.efficiency_n} x {sizes.efficiency_sleep * 1e3:g} ms on {sizes.workers}"
                                      + (f"; floor1 {floor_eff:.3f}" if floor_eff is not None else "")})
    delivered = _get(results, "many", "jobsched", "delivered")
    if "many" in results and "jobsched" in results["many"]:
        ok = delivered == sizes.many_n and not results["many"]["jobsched"].get("errors")
        targets.append({"target": f"{sizes.many_n} jobs on {sizes.many_workers} workers all delivered",
                        "value": delivered or 0, "bound": f"== {sizes.many_n}", "met": ok,
                        "detail": f"peak RSS {_get(results, 'many', 'jobsched', 'peak_rss_mb') or 0:.0f} MB"})
    cost = _get(results, "dashboard", "jobsched", "cost")
    if cost is not None:
        change = _get(results, "dashboard", "jobsched", "rate_change") or 0.0
        targets.append({"target": "dashboard attached: share of scheduler CPU", "value": cost, "bound": "< 0.05",
                        "met": cost < 0.05, "detail": f"throughput change {change * 100:+.1f} % (noisy)"})
    return targets


# ---------------------------------------------------------------------------------------------- output


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit == "rate":
        return f"{value:,.0f}"
    if unit == "us":
        return f"{value:,.0f}"
    if unit == "s":
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    if unit == "ratio":
        return f"{value:.3f}"
    if unit == "mb":
        return f"{value:,.0f}"
    return f"{value:g}"


def table(results: dict[str, Any], sizes: Sizes, peers: Sequence[str]) -> str:
    """The side-by-side table in Markdown: one row per peer, one column per measured quantity."""
    columns = [
        ("throughput", "jobs_per_s", "rate", "jobs/s"),
        ("roundtrip", "median_us", "us", "RTT median µs"),
        ("roundtrip", "p99_us", "us", "RTT p99 µs"),
        ("cold_start", "seconds", "s", "cold start s"),
        ("efficiency", "efficiency", "ratio", f"efficiency ({sizes.efficiency_n}×{sizes.efficiency_sleep * 1e3:g} ms)"),
        ("scale", "seconds", "s", f"{sizes.scale_workers} workers × {sizes.scale_n:,} s"),
        ("many", "jobs_per_s", "rate", f"{sizes.many_n:,} on {sizes.many_workers}: jobs/s"),
        ("many", "peak_rss_mb", "mb", "peak RSS MB"),
    ]
    columns = [c for c in columns if c[0] in results]
    head = "| peer | " + " | ".join(c[3] for c in columns) + " |"
    lines = [head, "|---|" + "---:|" * len(columns)]
    for peer in peers:
        cells = []
        for scenario, key, unit, _ in columns:
            entry = results.get(scenario, {}).get(peer, {})
            if entry.get("errors") and not entry.get("median"):
                cells.append("error")
            elif "skipped" in entry:
                cells.append("–")
            else:
                cells.append(_fmt(entry.get("median", {}).get(key), unit))
        if any(cells):
            lines.append(f"| {LABELS.get(peer, peer)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def extras(results: dict[str, Any]) -> list[str]:
    out = []
    qm = results.get("queue_memory", {})
    for kind in ("add_job", "submit"):
        v = qm.get(kind, {}).get("median", {})
        if v:
            out.append(f"queued jobs ({kind}, {int(v['n']):,}, not run): {v['bytes_per_job']:.0f} bytes of RSS per job")
    em = results.get("executor_map", {}).get("jobsched", {}).get("median", {})
    if em:
        out.append(f"Executor.map over {int(em['n']):,} items: {em['items_per_s']:,.0f} items/s, peak RSS "
                   f"{em['peak_rss_mb']:.0f} MB, +{em['growth_mb']:.1f} MB while mapping (streams); "
                   f"ProcessPoolExecutor.map: {em['ppe_items_per_s']:,.0f} items/s, +{em['ppe_growth_mb']:.1f} MB "
                   "(submits every item first)")
    db = results.get("dashboard", {}).get("jobsched", {})
    if db.get("median"):
        v = db["median"]
        out.append(f"dashboard attached: its thread used {v['cost'] * 100:.2f} % of the scheduler process's CPU; "
                   f"throughput {v['dashboard_jobs_per_s']:,.0f} vs {v['plain_jobs_per_s']:,.0f} jobs/s without "
                   f"({v['rate_change'] * 100:+.1f} %, {int(v['pairs'])} alternating pairs: within run-to-run noise "
                   "unless larger than about 10 %)")
    elif db.get("runs") and "skipped" in db["runs"][0]:
        out.append(f"dashboard: skipped ({db['runs'][0]['skipped']})")
    return out


def report(data: dict[str, Any]) -> str:
    sizes = Sizes(**data["meta"]["sizes"])
    lines = [table(data["results"], sizes, data["meta"]["peers"]), ""]
    lines += [f"- {x}" for x in extras(data["results"])]
    if data["targets"]:
        lines += ["", "| target | value | bound | met | detail |", "|---|---:|---|---|---|"]
        for t in data["targets"]:
            lines.append(f"| {t['target']} | {t['value']:.3f} | {t['bound']} | {'yes' if t['met'] else 'NO'} | "
                         f"{t['detail']} |")
    return "\n".join(lines)
