"""The report of ``benchmarks/run.py``: the results as Markdown tables, and the targets (benchmarks/README.md).

Pure functions of a results file (the JSON that ``run.py --json`` writes), so that
``notebooks/benchmarks.ipynb`` shows the same report as the command line. Every target is a ratio of two
figures of the same run; those that say "no slower than today" compare with ``--baseline`` (another
version, measured in the same run) and are left out without one.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from scenarios import BASE, Sizes, label, size_label  # a sibling module: benchmarks/ is on sys.path

NOISE = 0.05  # "no slower than today": within this share of the baseline, run-to-run noise


def _get(results: dict[str, Any], scenario: str, peer: str, key: str) -> float | None:
    value = results.get(scenario, {}).get(peer, {}).get("median", {}).get(key)
    return float(value) if value is not None else None


def _paired(results: dict[str, Any], scenario: str, peer: str, base: str, key: str) -> float | None:
    """The median over repeats of ``peer``'s figure over ``base``'s in the same repeat, or None.

    The peers of one repeat run back to back (run.py interleaves them), so each pair shares the machine's
    state of that moment: this machine's round trips switch between two modes (about 0.21 and 0.27 ms) from
    one repeat to the next, which moves a ratio of two separate medians by several percent either way.
    """
    runs_a = results.get(scenario, {}).get(peer, {}).get("runs", [])
    runs_b = results.get(scenario, {}).get(base, {}).get("runs", [])
    pairs = [ra[key] / rb[key] for ra, rb in zip(runs_a, runs_b, strict=False)
             if isinstance(ra.get(key), (int, float)) and isinstance(rb.get(key), (int, float)) and rb[key]]
    return float(statistics.median(pairs)) if pairs else None


def evaluate(results: dict[str, Any], sizes: Sizes) -> list[dict[str, Any]]:
    """Check the targets (benchmarks/README.md) against the peers of this run."""
    targets: list[dict[str, Any]] = []
    group = 'Throughput, latency and scale'

    def ratio(name: str, num: tuple[str, str, str], den: tuple[str, str, str], op: str, bound: float,
              factor: float = 1.0) -> None:
        a, b = _get(results, *num), _get(results, *den)
        if a is None or b is None or b == 0:
            return
        compare(name, a / (b * factor), op, bound, f"{num[1]} {a:.4g} / {den[1]} {b:.4g}")

    def compare(name: str, r: float, op: str, bound: float, detail: str) -> None:
        met = r >= bound if op == ">=" else r < bound if op == "<" else r <= bound
        targets.append({"target": name, "value": r, "bound": f"{op} {bound:g}", "met": met, "group": group,
                        "detail": detail})

    def at_least(name: str, value: float | None, bound: float, detail: str) -> None:
        if value is not None:
            targets.append({"target": name, "value": value, "bound": f">= {bound:g}", "met": value >= bound,
                            "group": group, "detail": detail})

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
                            "group": group,
                            "detail": f"{sizes.efficiency_n} x {sizes.efficiency_sleep * 1e3:g} ms on {sizes.workers}"
                                      + (f"; floor1 {floor_eff:.3f}" if floor_eff is not None else "")})
    delivered = _get(results, "many", "jobsched", "delivered")
    if "many" in results and "jobsched" in results["many"]:
        ok = delivered == sizes.many_n and not results["many"]["jobsched"].get("errors")
        targets.append({"target": f"{sizes.many_n} jobs on {sizes.many_workers} workers all delivered",
                        "value": delivered or 0, "bound": f"== {sizes.many_n}", "met": ok, "group": group,
                        "detail": f"peak RSS {_get(results, 'many', 'jobsched', 'peak_rss_mb') or 0:.0f} MB"})
    cost = _get(results, "dashboard", "jobsched", "cost")
    if cost is not None:
        change = _get(results, "dashboard", "jobsched", "rate_change") or 0.0
        targets.append({"target": "dashboard attached: share of scheduler CPU", "value": cost, "bound": "< 0.05",
                        "met": cost < 0.05, "group": group,
                        "detail": f"throughput change {change * 100:+.1f} % (noisy)"})

    # Payloads through shared memory, prefetch="auto", and nothing slower than the baseline.
    group = 'Large payloads, prefetch, and no slower than the baseline'
    pl, big = "payload", size_label(sizes.payload_big)
    shown = _spaced(big)
    ratio(f"{shown} round trip: ProcessPoolExecutor fork / jobsched submit", (pl, "ppe_fork", f"rt_{big}_ms"),
          (pl, "jobsched", f"rt_{big}_ms"), ">=", 5.0)
    x = _get(results, pl, "jobsched", f"x_memcpy_{big}")
    if x is not None:
        copy = _get(results, pl, "jobsched", f"memcpy_{big}_ms") or 0.0
        targets.append({"target": f"{shown} round trip (submit) / one memcpy of it", "value": x, "bound": "<= 4",
                        "met": x <= 4.0, "group": group,
                        "detail": f"numpy.copyto {copy:.3g} ms in the same process"})
    peak = _get(results, pl, "jobsched", f"peak_{big}_x")
    if peak is not None:
        targets.append({"target": f"scheduler peak RSS in the {shown} round trip / payload", "value": peak,
                        "bound": "<= 1.3", "met": peak <= 1.3, "group": group,
                        "detail": "VmHWM above the RSS before the payload existed, plus the argument; "
                                  "the result itself, read in full, is 1"})
    ratio('prefetch="auto" throughput (submit) / ProcessPoolExecutor fork', (tp, "jobsched_auto", "jobs_per_s"),
          (tp, "ppe_fork", "jobs_per_s"), ">=", 2.5)
    em = results.get("executor_map", {}).get("jobsched", {}).get("median", {})
    if em.get("items_per_s") and em.get("ppe_items_per_s"):
        r = em["items_per_s"] / em["ppe_items_per_s"]
        targets.append({"target": f"Executor.map / ProcessPoolExecutor.map ({int(em['n']):,} items)", "value": r,
                        "bound": ">= 2.5", "met": r >= 2.5, "group": group,
                        "detail": f"{em['items_per_s']:,.0f} / {em['ppe_items_per_s']:,.0f} items/s"})
    ratio('prefetch="auto" throughput (add_job) / Pool.imap_unordered', (tp, "jobsched_manual_auto", "jobs_per_s"),
          (tp, "mp_pool", "jobs_per_s"), ">=", 1.0)
    for peer, api in (("jobsched_auto", "submit"), ("jobsched_manual_auto", "add_job")):
        at_least(f'efficiency, prefetch="auto" ({api})', _get(results, "efficiency", peer, "efficiency"), 0.97,
                 f"{sizes.efficiency_n} x {sizes.efficiency_sleep * 1e3:g} ms on {sizes.workers}")
    ratio(f"{sizes.scale_workers} workers x {sizes.scale_n} jobs / ProcessPoolExecutor fork",
          (sc, "jobsched", "seconds"), (sc, "ppe_fork", "seconds"), "<=", 2.0)
    # "No slower than today": against the baseline (--baseline), within NOISE, repeat by repeat (_paired).
    def against_baseline(name: str, scenario: str, peer: str, key: str, op: str, bound: float) -> None:
        base = BASE + peer
        r = _paired(results, scenario, peer, base, key)
        a, b = _get(results, scenario, peer, key), _get(results, scenario, base, key)
        if r is not None and a is not None and b is not None:
            compare(name, r, op, bound, f"median of per-repeat ratios; medians {peer} {a:.4g} / {base} {b:.4g}")

    for peer, api in (("jobsched", "submit"), ("jobsched_manual", "add_job")):
        against_baseline(f"default throughput ({api}) / baseline", tp, peer, "jobs_per_s", ">=", 1.0 - NOISE)
        against_baseline(f"median round trip ({api}) / baseline", rt, peer, "median_us", "<=", 1.0 + NOISE)
        against_baseline(f"1 KiB payload round trip ({api}) / baseline", pl, peer, "rt_1KiB_ms", "<=", 1.0 + NOISE)
    against_baseline("cold start / baseline", cs, "jobsched", "seconds", "<=", 1.0 + NOISE)

    # Data sent once, and a cluster at local speed.
    group = 'Shared data and the cluster'
    sd = results.get("shared_data", {}).get("jobsched", {}).get("median", {})
    if sd.get("ratio") is not None:
        targets.append({"target": f"{int(sd['n']):,} jobs given a {int(sd['size_mb'])} MiB handle / a tiny argument",
                        "value": sd["ratio"], "bound": "<= 1.2", "met": sd["ratio"] <= 1.2, "group": group,
                        "detail": f"{sd['jobsched_put_s']:.3g} / {sd['jobsched_tiny_s']:.3g} s; Dask scatter "
                                  f"{sd.get('dask_ratio', float('nan')):.3g}x; put {sd['put_s'] * 1e3:.0f} ms once "
                                  f"(scatter {sd.get('dask_put_s', float('nan')) * 1e3:.0f} ms); reading every "
                                  f"page costs a job {sd['touch_us'] / 1e3:.2g} ms more"})
    if sd.get("pss_copies") is not None:
        targets.append({"target": "copies of the handle's array held (PSS / size)", "value": sd["pss_copies"],
                        "bound": "<= 1.3", "met": sd["pss_copies"] <= 1.3, "group": group,
                        "detail": f"Dask scatter {sd.get('dask_pss_copies', float('nan')):.3g}"})
    cl = results.get("cluster", {}).get("jobsched", {}).get("median", {})
    if cl.get("resident_jobs_per_s") is not None:
        rate = cl["resident_jobs_per_s"]
        targets.append({"target": "resident Dask workers: tiny jobs/s (LocalCluster)", "value": rate,
                        "bound": ">= 10000", "met": rate >= 10_000, "group": group,
                        "detail": f"round trip {cl['resident_rt_us']:,.0f} µs; Dask's own "
                                  f"{cl['dask_jobs_per_s']:,.0f} jobs/s, {cl['dask_rt_us']:,.0f} µs"})
        targets.append({"target": "resident / per-task Dask jobs/s", "value": cl["speedup"], "bound": ">= 15",
                        "met": cl["speedup"] >= 15, "group": group,
                        "detail": f"{rate:,.0f} / {cl['pertask_jobs_per_s']:,.0f} jobs/s; per-task round trip "
                                  f"{cl['pertask_rt_us']:,.0f} µs"})

    # What a results journal costs.
    group = 'The journal'
    jr = results.get("journal", {}).get("jobsched", {}).get("median", {})
    if jr.get("ratio"):
        targets.append({"target": f"throughput with a journal / without ({int(jr['n']):,} trivial jobs, add_job)",
                        "value": jr["ratio"], "bound": ">= 0.85", "met": jr["ratio"] >= 0.85, "group": group,
                        "detail": f"{jr['journal_jobs_per_s']:,.0f} / {jr['plain_jobs_per_s']:,.0f} jobs/s, "
                                  f"{int(jr['pairs'])} alternating pairs; {jr['bytes_per_job']:.0f} bytes per job"})
    if jr.get("results_s") is not None:
        targets.append({"target": f"Journal.results() of {int(jr['records']):,} records, s", "value": jr["results_s"],
                        "bound": "< 1", "met": jr["results_s"] < 1.0, "group": group, "detail": "one read"})
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
    if unit == "x":
        return f"{value:.2f}"
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
    if not columns:
        return ""
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
            lines.append(f"| {label(peer)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def payload_table(results: dict[str, Any], sizes: Sizes, peers: Sequence[str]) -> str:
    """The payload scenario in Markdown: round trips per array size, the largest against memcpy and PPE, memory."""
    entries = results.get("payload", {})
    labels = [size_label(s) for s in (1 << 10, 1 << 20, sizes.payload_big)]
    big = labels[-1]
    ppe = _get(results, "payload", "ppe_fork", f"rt_{big}_ms")
    pretty = [_spaced(x) for x in labels]
    head = ("| float64 array, sent and returned | " + " | ".join(f"{x} ms" for x in pretty)
            + f" | {pretty[-1]}: × memcpy | {pretty[-1]}: ProcessPoolExecutor fork ÷ peer"
            + f" | scheduler peak RSS ÷ {pretty[-1]} |")
    lines = [head, "|---|" + "---:|" * (len(labels) + 3)]
    copies: dict[str, list[float]] = {x: [] for x in labels}
    for peer in peers:
        entry = entries.get(peer, {})
        values = entry.get("median", {})
        if not values:
            if entry.get("errors"):
                lines.append(f"| {label(peer)} | error |" + " |" * (len(labels) + 2))
            continue
        for x in labels:
            if f"memcpy_{x}_ms" in values:
                copies[x].append(values[f"memcpy_{x}_ms"])
        rt = values.get(f"rt_{big}_ms")
        cells = [_ms(values.get(f"rt_{x}_ms")) for x in labels]
        cells.append(_fmt(values.get(f"x_memcpy_{big}"), "x"))
        cells.append(_fmt(ppe / rt if ppe and rt else None, "x"))
        cells.append(_fmt(values.get(f"peak_{big}_x"), "x"))
        lines.append(f"| {label(peer)} | " + " | ".join(cells) + " |")
    if any(copies.values()):
        cells = [_ms(statistics.median(copies[x]) if copies[x] else None) for x in labels]
        lines.append("| one memcpy (`numpy.copyto`), median over the peers' processes | " + " | ".join(cells)
                     + " | 1 | | |")
    return "\n".join(lines)


def shm_table(results: dict[str, Any]) -> list[str]:
    """The shm_threshold scenario in Markdown, and the smallest size from which shared memory is faster."""
    values = results.get("shm_threshold", {}).get("jobsched", {}).get("median", {})
    labels = [k.removeprefix("on_").removesuffix("_us") for k in values if k.startswith("on_") and k.endswith("_us")]
    if not labels:
        return []
    lines = ["| array (uint8), 1 worker | round trip, shared memory µs | through the socket µs | shm ÷ socket |",
             "|---|---:|---:|---:|"]
    faster = []
    for x in labels:
        on, off = values[f"on_{x}_us"], values[f"off_{x}_us"]
        faster.append(on < off)
        lines.append(f"| {_spaced(x)} | {on:,.0f} | {off:,.0f} | {on / off:.2f} |")
    # The crossover: the smallest size from which shared memory wins at every larger size too.
    cross = next((labels[i] for i in range(len(labels)) if all(faster[i:])), None)
    threshold = values.get("default_threshold")
    lines += ["", f"- shared memory is faster from {_spaced(cross) if cross else 'no measured size'} on"
              + (f" (THRESHOLD in jobsched/_data/shm.py: {_spaced(size_label(int(threshold)))})" if threshold else "")]
    return lines


def _spaced(text: str) -> str:
    """``"100MiB"`` -> ``"100 MiB"``."""
    return text[:-3] + " " + text[-3:] if text.endswith("iB") else text


def _ms(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def extras(results: dict[str, Any]) -> list[str]:
    out = []
    qm = results.get("queue_memory", {})
    for kind in ("add_job", "submit"):
        v = qm.get(kind, {}).get("median", {})
        if v:
            out.append(f"queued jobs ({kind}, {int(v['n']):,}, not run): {v['bytes_per_job']:.0f} bytes of RSS per job")
    em = results.get("executor_map", {}).get("jobsched", {}).get("median", {})
    if em:
        out.append(f"Executor.map (prefetch=\"auto\") over {int(em['n']):,} items: {em['items_per_s']:,.0f} items/s, "
                   "peak RSS "
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
    """The whole report in Markdown: the tables, then the targets by group (measured vs bound, met or not)."""
    sizes = Sizes(**data["meta"]["sizes"])
    results, peers = data["results"], data["meta"]["peers"]
    main = table(results, sizes, peers)
    lines = [main, ""] if main else []
    if "payload" in results:
        lines += [payload_table(results, sizes, peers), ""]
    shm = shm_table(results)
    if shm:
        lines += [*shm, ""]
    lines += [f"- {x}" for x in extras(results)]
    baseline = data["meta"].get("baseline")
    if baseline:
        lines.append("- baseline (--baseline): another checkout of jobsched, measured in the same run")
    for group in dict.fromkeys(t.get("group", "Targets") for t in data["targets"]):
        lines += ["", f"{group}: targets, in this run:", "",
                  "| target | measured | bound | met | detail |", "|---|---:|---|---|---|"]
        for t in data["targets"]:
            if t.get("group", "Targets") == group:
                lines.append(f"| {t['target']} | {t['value']:.3f} | {t['bound']} | {'yes' if t['met'] else 'NO'} "
                             f"| {t['detail']} |")
    return "\n".join(lines)
