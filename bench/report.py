"""The benchmark's report: the targets checked from one run, and the markdown tables.

Every target is a ratio or a bound measured in the same run (interleaved rounds for HTTP),
so a busy machine moves both sides of a ratio together.
"""

from __future__ import annotations

from typing import Any

H3 = "h3green"
WORKLOADS = ("hello", "json-params")


def _row(target: str, measured: str, goal: str, ok: bool) -> dict[str, Any]:
    return {"target": target, "measured": measured, "goal": goal, "pass": ok}


def http_targets(http: dict[str, Any], ref: str | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    ours = http.get(H3, {})

    def ratio(workload: str, peer: str, goal: float) -> None:
        theirs = http.get(peer, {}).get(workload)
        if workload in ours and theirs:
            value = ours[workload]["rps"] / theirs["rps"]
            rows.append(_row(f"{workload}: h3green / {peer}", f"{value:.2f}x", f">= {goal}x", value >= goal))

    for workload in WORKLOADS:
        ratio(workload, "uvicorn+starlette", 1.5)
        ratio(workload, "bare httptools", 0.6)
    for workload in WORKLOADS:
        # The access log's cost: log-off req/s ÷ log-on req/s, at most 1.15.
        logged = http.get("h3green+log", {}).get(workload)
        if workload in ours and logged:
            value = ours[workload]["rps"] / logged["rps"]
            rows.append(
                _row(f"{workload}: h3green / h3green+log", f"{value:.2f}x", "<= 1.15x", value <= 1.15)
            )
    ratio("hello", "bare h11", 0.9)
    ratio("hello", "pywsgi", 1.6)
    ratio("hello", "gunicorn+flask", 3.0)
    before = http.get(f"h3green@{ref}") if ref else None
    if before:
        for workload in WORKLOADS:
            if workload in ours and workload in before:
                value = ours[workload]["cpu_us"] / before[workload]["cpu_us"]
                rows.append(_row(f"{workload}: CPU µs/req, h3green / h3green@{ref}", f"{value:.2f}x",
                                 "<= 0.6x", value <= 0.6))  # fmt: skip
    return rows


def sse_targets(sse: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    peers = sse["peers"]
    ours = peers.get(H3)
    if ours:
        top = ours["levels"][-1]
        n = top["streams"]
        kib = top["kib_per_stream"]
        rows.append(_row(f"SSE RSS per idle stream at {n} streams", f"{kib:.1f} KiB", "<= 12 KiB", kib <= 12))
        fan = top["fanout_median_ms"]
        rows.append(_row(f"fan-out to {n} streams (median)", f"{fan:.0f} ms", "<= 300 ms", fan <= 300))
        eps = ours["throughput"]["events_per_s"]
        rows.append(_row("events/s on one stream", f"{eps:,.0f}", ">= 30,000", eps >= 30000))
        pywsgi = peers.get("pywsgi")
        if pywsgi:
            value = eps / pywsgi["throughput"]["events_per_s"]
            rows.append(
                _row("events/s on one stream: h3green / stock pywsgi", f"{value:.2f}x", "> 1.0x", value > 1)
            )
    beat = sse.get("heartbeat")
    if beat:
        us = beat["us_per_beat"]
        rows.append(_row("server CPU per heartbeat", f"{us:.1f} µs", "<= 25 µs", us <= 25))
        share = us * 20000 / 5 / 1e6
        rows.append(_row("20,000 streams, 5 s heartbeat (projected)", f"{share:.1%} of a core", "<= 10%",
                         share <= 0.10))  # fmt: skip
    return rows


def _http_tables(http: dict[str, Any]) -> list[str]:
    lines = ["", "| server | hello req/s | p50 / p99 ms | CPU µs/req | json-params req/s | p50 / p99 ms "
             "| CPU µs/req | what |", "|---|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for name, row in http.items():
        cells = []
        for workload in WORKLOADS:
            r = row.get(workload)
            cells += (
                [f"{r['rps']:,.0f}", f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f}", f"{r['cpu_us']:.0f}"]
                if r
                else ["-", "-", "-"]
            )
        lines.append(f"| {name} | {' | '.join(cells)} | {row['note']} |")
    ours = http.get(H3)
    if ours:
        lines += ["", "| h3green ÷ peer | hello | json-params |", "|---|---:|---:|"]
        for name, row in http.items():
            if name == H3:
                continue
            cells = [
                f"{ours[w]['rps'] / row[w]['rps']:.2f}x" if w in ours and w in row else "-" for w in WORKLOADS
            ]
            lines.append(f"| {name} | {' | '.join(cells)} |")
    return lines


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return (
        f"{value / 1000:,.1f} s"
        if value >= 10000
        else f"{value:,.0f} ms"
        if value >= 10
        else f"{value:.1f} ms"
    )


def _sse_tables(sse: dict[str, Any]) -> list[str]:
    peers = sse["peers"]
    names = list(peers)
    lines = ["", f"| SSE, one process each | {' | '.join(names)} |", "|---|" + "---:|" * len(names)]
    levels = [e["streams"] for e in next(iter(peers.values()))["levels"]] if peers else []

    def cells(pick: Any) -> str:
        return " | ".join(pick(peers[n]) for n in names)

    def at(level: int, key: str, fmt: Any) -> Any:
        def pick(p: dict[str, Any]) -> str:
            found = [e for e in p["levels"] if e["streams"] == level]
            return fmt(found[0][key]) if found else "-"

        return pick

    for level in levels:
        kib = cells(at(level, "kib_per_stream", lambda v: f"{v:.1f} KiB"))
        lines.append(f"| RSS per idle stream, {level:,} streams | {kib} |")
    for level in levels:
        lines.append(f"| one publish → last of {level:,} streams (median of {sse['publishes']}) | "
                     f"{cells(at(level, 'fanout_median_ms', _ms))} |")  # fmt: skip

    def rate(p: dict[str, Any]) -> str:
        return f"{p['throughput']['events_per_s']:,.0f}"

    lines.append(f"| events/s on one stream | {cells(rate)} |")

    def noticed(p: dict[str, Any]) -> str:
        d = p["detect"]
        text = _ms(d["median_ms"])
        if d["undetected"]:
            text += f" ({d['undetected']} of {d['samples']} not within {d['timeout_s']:.0f} s)"
        return text

    samples = next(iter(peers.values()))["detect"]["samples"] if peers else 0
    lines.append(f"| client departure noticed (median of {samples}) | {cells(noticed)} |")
    lines += ["", "What each column runs: " + "; ".join(f"**{n}**: {peers[n]['note']}" for n in names) + "."]
    lines.append(f"Keep-alive ping of the peers: {sse['ping_s']:g} s (a WSGI generator notices a departed "
                 "client only when a write fails, so the ping bounds its detection).")  # fmt: skip
    for key, who in (("heartbeat", "h3green"), ("heartbeat_ref", "h3green before (--compare-ref)")):
        beat = sse.get(key)
        if not beat:
            continue
        lines += ["", f"{who} heartbeat cost: {beat['streams']:,} idle streams, heartbeat {beat['interval_s']:g} s: "
                  f"{beat['beats']:,} heartbeats in {beat['window_s']:.1f} s cost {beat['cpu_s']:.2f} s of server CPU "
                  f"= {beat['us_per_beat']:.1f} µs per heartbeat ({beat['core_share']:.1%} of a core); longest "
                  f"silence on a stream {beat['longest_silence_s']:.2f} s."]  # fmt: skip
    return lines


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    v = m["versions"]
    versions = ", ".join(f"{name} {version}" for name, version in v.items() if name != "h3green")
    lines = [
        f"### h3green benchmark, {m['date']}",
        "",
        f"- machine: {m['system']}, {m['cpu']}, {m['cores']} cores; server pinned to core "
        f"{report['server_core']}, load generator to core {report['load_core']}",
        f"- Python {m['python']}; h3green {v['h3green']}; {versions}",
        f"- HTTP load: {report['loadgen']}, {report['connections']} keep-alive connections, "
        f"{report['duration']} s per measurement, median of {report['runs']} interleaved runs"
        if report["http"]
        else "- HTTP: not measured (--skip-http)",
        f"- load average before {m['load_before'][0]:.2f}, after {report['load_after'][0]:.2f} "
        "(other work on the machine moves absolute numbers; compare ratios)",
    ]
    lines += [f"- note: {note}" for note in report["notes"]]
    if report["http"]:
        lines += _http_tables(report["http"])
    if report["sse"]:
        lines += _sse_tables(report["sse"])
    if report["targets"]:
        lines += ["", "| target | measured | goal | |", "|---|---:|---:|---|"]
        for row in report["targets"]:
            lines.append(
                f"| {row['target']} | {row['measured']} | {row['goal']} | {'pass' if row['pass'] else 'MISS'} |"
            )
    return "\n".join(lines)
