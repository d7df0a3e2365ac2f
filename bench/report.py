#!/usr/bin/env python3
"""bench/report.py: turns the measurements of bench/run into the Markdown results and an SVG chart.

Python standard library only; the SVG uses generic font families (no web fonts).
"""

import argparse
import csv
import html
import os
import platform
import subprocess

STACKS = {
    "es-direct": ("1", "edge-session (library, direct Redis)"),
    "es-rest": ("2", "edge-session (library, REST via upstash-local)"),
    "tower": ("3", "tower-sessions + tower-sessions-redis-store"),
    "express": ("4", "express-session + connect-redis"),
    "gateway": ("5", "edge-session gateway (native host) + trivial origin"),
    "origin": ("5'", "trivial origin alone"),
    "limit": ("6", "the limit (bare Redis round trip)"),
}
SHORT = {
    "es-direct": "edge-session, direct",
    "es-rest": "edge-session, REST",
    "tower": "tower-sessions",
    "express": "express-session",
    "gateway": "gateway + origin",
    "origin": "origin alone",
    "limit": "the limit",
}
REQUESTS = {
    "anon": "anonymous GET /anon",
    "incr": "signed-in read + increment GET /incr",
    "login": "login POST /login",
}
COLORS = {
    "es-direct": "#1f77b4",
    "es-rest": "#6baed6",
    "tower": "#d62728",
    "express": "#ff7f0e",
    "gateway": "#2ca02c",
    "origin": "#98df8a",
    "limit": "#7f7f7f",
}


def read_tsv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = "%.1f GiB" % (int(line.split()[1]) / 1024 / 1024)
                    break
    except OSError:
        pass
    node = ""
    try:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem": mem,
        "kernel": platform.release(),
        "node": node,
    }


def ms(us):
    return float(us) / 1000.0


def fmt_ms(us):
    v = ms(us)
    return "%.2f" % v if v < 10 else "%.1f" % v


def ratio_line(name, value, target, op, unit=""):
    if value is None:
        return "| %s | n/a | %s %s%s | not measured |" % (name, op, target, unit)
    met = value >= target if op == ">=" else value < target
    shown = ("%.2f" % value) + unit
    return "| %s | %s | %s %s%s | %s |" % (name, shown, op, target, unit, "met" if met else "**missed**")


def streaming_section(rows):
    """The streaming table and its targets (a 64 MiB download, medians)."""
    out = ["## Streaming: a 64 MiB download", ""]
    out.append(
        "curl on a fresh connection, the demo origin's `/stream/download` (64 KiB chunks, "
        "Content-Length); medians of the runs after a warm-up. `worker` is the Worker under workerd "
        "(Miniflare, no wrangler dev proxy); `worker-origin` a plain JavaScript pass-through Worker "
        "under the same workerd, for scale."
    )
    out.append("")
    out.append("| target | visitor | first byte, ms | MiB/s | short downloads |")
    out.append("|---|---|---:|---:|---:|")
    by = {}
    for r in rows:
        by[(r["target"], r["visitor"])] = r
        out.append(
            "| %s | %s | %s | %s | %s |"
            % (r["target"], r["visitor"], r["ttfb_p50_ms"], r["mib_s_p50"], r["short_downloads"])
        )
    out.append("")
    origin = by.get(("origin", "anonymous"))
    if origin:
        out.append("| streaming target | measured | target | |")
        out.append("|---|---:|---:|---|")
        for (target, visitor), r in by.items():
            if target in ("origin", "worker-origin"):
                continue
            extra = float(r["ttfb_p50_ms"]) - float(origin["ttfb_p50_ms"])
            out.append(ratio_line("first byte, %s (%s) - origin alone" % (target, visitor), extra, 1, "<", " ms"))
            ratio = float(r["mib_s_p50"]) / float(origin["mib_s_p50"]) if float(origin["mib_s_p50"]) else None
            out.append(ratio_line("download MiB/s, %s (%s) / origin alone" % (target, visitor), ratio, 0.8, ">=", "x"))
        out.append("")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--correctness", required=True)
    ap.add_argument("--commands", required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--svg", required=True)
    ap.add_argument("--chart-link", required=True)
    ap.add_argument("--started", required=True)
    ap.add_argument("--redis-version", required=True)
    ap.add_argument("--load", default="")
    ap.add_argument("--load-after", default="")
    ap.add_argument("--note", default="")
    ap.add_argument("--settings", default="")
    ap.add_argument("--streaming", default="")
    a = ap.parse_args()

    rows = read_tsv(a.results)
    corr = {r["stack"]: r for r in read_tsv(a.correctness)}
    cmds = {(r["stack"], r["request"]): r["commands_per_request_by_name"] for r in read_tsv(a.commands)}
    by = {(r["stack"], r["request"]): r for r in rows}
    stacks = [s for s in STACKS if any(r["stack"] == s for r in rows)]
    m = machine()

    def rps(stack, req):
        r = by.get((stack, req))
        return float(r["rps"]) if r else None

    def div(x, y):
        return x / y if x is not None and y else None

    out = []
    out.append("# Benchmarks: %s" % a.started[:10])
    out.append("")
    out.append("Run `bench/run` (started %s)." % a.started)
    out.append("")
    out.append(
        "Machine: %s cores (%s), %s RAM, Linux %s; Redis %s; Node %s. Load average (1, 5, 15 min) "
        "%s before, %s after. Load tool: wrk on loopback, a separate process on the same machine."
        % (m["nproc"], m["cpu"], m["mem"], m["kernel"], a.redis_version, m["node"], a.load, a.load_after)
    )
    out.append("")
    if a.settings:
        out.append("Settings: %s." % a.settings)
        out.append("")
    if a.note:
        out.append("Note: %s" % a.note)
        out.append("")
    out.append("![req/s per stack and request](%s)" % a.chart_link)
    out.append("")
    out.append(
        "| # | stack | request | req/s | p50 ms | p99 ms | Redis commands / request | round trips / request | Redis CPU us / request | p50 ms, 1 connection | lost increments |"
    )
    out.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for s in stacks:
        for req in REQUESTS:
            r = by.get((s, req))
            if not r:
                continue
            lost = ""
            if req == "incr":
                c = corr.get(s)
                if c:
                    ok = int(c["responses_2xx"])
                    lost_n = int(c["lost"])
                    pct = 100.0 * lost_n / ok if ok else 0.0
                    lost = "%d of %d (%.1f%%)" % (lost_n, ok, pct)
                else:
                    lost = "n/a (no session)"
            extra = ""
            if int(r["non_2xx"]) or int(r["errors"]):
                extra = " (non-2xx %s, socket errors %s)" % (r["non_2xx"], r["errors"])
            out.append(
                "| %s | %s | %s | %s%s | %s | %s | %s | %s | %s | %s | %s |"
                % (
                    STACKS[s][0],
                    STACKS[s][1],
                    req,
                    "{:,}".format(int(float(r["rps"]))),
                    extra,
                    fmt_ms(r["p50_us"]),
                    fmt_ms(r["p99_us"]),
                    r["commands_per_request"],
                    r["roundtrips_per_request"],
                    r.get("redis_us_per_request", ""),
                    fmt_ms(r["p50_one_connection_us"]) if r.get("p50_one_connection_us") else "",
                    lost,
                )
            )
    out.append("")
    out.append("Requests: " + "; ".join("`%s`: %s" % (k, v) for k, v in REQUESTS.items()) + ".")
    out.append("")

    # Ratios and targets.
    out.append("## Targets")
    out.append("")
    out.append("| ratio | measured | target | |")
    out.append("|---|---:|---:|---|")
    out.append(ratio_line("stack 1 / stack 3 (tower-sessions), increment req/s", div(rps("es-direct", "incr"), rps("tower", "incr")), 1.8, ">=", "x"))
    out.append(ratio_line("stack 1 / stack 4 (express-session), increment req/s", div(rps("es-direct", "incr"), rps("express", "incr")), 10, ">=", "x"))
    out.append(ratio_line("stack 1 / stack 6 (the limit), increment req/s", div(rps("es-direct", "incr"), rps("limit", "incr")), 0.85, ">=", "x"))
    out.append(ratio_line("stack 1 / stack 6, anonymous req/s", div(rps("es-direct", "anon"), rps("limit", "anon")), 0.9, ">=", "x"))
    for req in REQUESTS:
        g, o = by.get(("gateway", req)), by.get(("origin", req))
        val = ms(g["p50_one_connection_us"]) - ms(o["p50_one_connection_us"]) if g and o else None
        out.append(ratio_line("gateway overhead over the origin alone, p50 on one connection, %s" % req, val, 1, "<", " ms"))
    for req in REQUESTS:
        g, o = by.get(("gateway", req)), by.get(("origin", req))
        val = ms(g["p50_us"]) - ms(o["p50_us"]) if g and o else None
        out.append(ratio_line("gateway overhead over the origin alone, p50 under load, %s" % req, val, 1, "<", " ms"))
    rt_targets = [
        ("anon", 0, "=="), ("incr", 1, "=="), ("login", 2, "<="),
    ]
    for s in ("es-direct", "es-rest", "gateway"):
        if s not in stacks:
            continue
        for req, want, op in rt_targets:
            r = by.get((s, req))
            if not r:
                continue
            target = 2 if (s == "gateway" and req == "incr") else want
            got = float(r["roundtrips_per_request"])
            ok = abs(got - target) < 0.05 if op == "==" else got <= target + 0.05
            out.append(
                "| round trips, stack %s, %s | %.2f | %s %d | %s |"
                % (STACKS[s][0], req, got, "=" if op == "==" else "<=", target, "met" if ok else "**missed**")
            )
    for s in ("es-direct", "es-rest", "gateway"):
        c = corr.get(s)
        if c:
            out.append(
                "| lost increments, stack %s | %s | 0 | %s |"
                % (STACKS[s][0], c["lost"], "met" if int(c["lost"]) == 0 else "**missed**")
            )
    g, o = rps("gateway", "anon"), rps("origin", "anon")
    out.append(ratio_line("native host anonymous pass-through / origin alone, req/s", div(g, o), 0.5, ">=", "x"))
    out.append("")

    if a.streaming:
        out.extend(streaming_section(read_tsv(a.streaming)))

    # Where a target is missed: what the figures themselves show.
    notes = []
    e, l = by.get(("es-direct", "incr")), by.get(("limit", "incr"))
    if e and l and div(rps("es-direct", "incr"), rps("limit", "incr")) < 0.85:
        notes.append(
            "Stack 1's increment costs Redis %s us of CPU and %s commands per request, the limit's %s us "
            "and %s (same round trips: %s vs %s). Redis runs every request's work on one thread, on "
            "cores shared with the app and the load tool, so that per-request work caps the "
            "throughput: the gap is in the write script (`apply`: %s), not in the round trips."
            % (e.get("redis_us_per_request", "?"), e["commands_per_request"],
               l.get("redis_us_per_request", "?"), l["commands_per_request"],
               e["roundtrips_per_request"], l["roundtrips_per_request"], cmds.get(("es-direct", "incr"), "?"))
        )
    g, o = by.get(("gateway", "anon")), by.get(("origin", "anon"))
    if g and o and g.get("p50_one_connection_us") and ms(g["p50_us"]) - ms(o["p50_us"]) >= 1:
        notes.append(
            "The gateway adds %.2f ms at p50 to an anonymous request on one connection (no store call: "
            "the proxy hop alone), and %.2f ms under load, where the gateway, the origin, Redis and wrk "
            "compete for the same cores."
            % (ms(g["p50_one_connection_us"]) - ms(o["p50_one_connection_us"]), ms(g["p50_us"]) - ms(o["p50_us"]))
        )
    if notes:
        out.append("## What the figures show where a target is missed")
        out.append("")
        for n_ in notes:
            out.append("- " + n_)
        out.append("")

    out.append("## Redis commands per request, by command")
    out.append("")
    out.append("From the one-connection calibration run (per request, averaged).")
    out.append("")
    out.append("| stack | request | commands |")
    out.append("|---|---|---|")
    for s in stacks:
        for req in REQUESTS:
            if (s, req) in cmds:
                out.append("| %s | %s | %s |" % (STACKS[s][1], req, cmds[(s, req)]))
    out.append("")

    out.append("## Method")
    out.append("")
    out.append(
        "- One redis-server (no persistence) for the whole run, flushed between stacks; each stack "
        "starts, serves a warm-up run (discarded), then each request type is measured with wrk "
        "(fixed connections and duration) from a separate process on loopback."
    )
    out.append(
        "- `incr` uses a pool of sessions logged in through the stack's own `/login` before the "
        "measurement (as many as connections), each wrk thread walking the pool from its own offset."
    )
    out.append(
        "- Redis commands / request: `INFO commandstats` calls (all commands but the harness's own "
        "`INFO`; an `EVALSHA` counts once plus once per command its script runs) over the measured "
        "run, divided by the completed requests."
    )
    out.append(
        "- Redis CPU us / request: Redis's own CPU time (`INFO cpu`, user + system) over the measured "
        "run, divided by the completed requests: what each request costs the one shared Redis, "
        "network handling and script execution included."
    )
    out.append(
        "- Round trips / request: network calls to the store, from a calibration run on ONE "
        "connection (sequential requests, so no client can coalesce two requests' commands into one "
        "write). Direct Redis: Redis's read events (`INFO stats` `total_reads_processed`; one per "
        "command or pipeline a sequential client sends), minus the harness's own `INFO`. REST "
        "(stack 2): HTTP calls counted by upstash-local (`/__stats`). Stack 5 talks to Redis "
        "directly (`REDIS_URL`)."
    )
    out.append(
        "- Lost increments: every connection increments the SAME session for the measured duration; "
        "afterwards one more `/incr` answers the stored count plus one. Lost = 2xx answers - stored "
        "count (requests still in flight when wrk stops may add increments that wrk never counted, so "
        "the figure is a lower bound)."
    )
    out.append(
        "- Stack 5 (`edge-session-host` in front of the trivial origin) is reported next to the same "
        "origin alone (5'); the difference at p50 is the gateway's own overhead, store round trips "
        "included: on one connection (the latency the gateway adds to a request) and under the "
        "measured load (where queueing for the shared cores dominates). The origin alone answers "
        "`/incr` without a session."
    )
    out.append("")
    with open(a.md, "w") as f:
        f.write("\n".join(out))

    write_svg(a.svg, stacks, by, corr, a.started[:10], m, a.redis_version)


def write_svg(path, stacks, by, corr, date, m, redis_version):
    panel_w, label_w, bar_h, gap = 300, 190, 18, 6
    top = 70
    n = len(stacks)
    panel_h = n * (bar_h + gap) + 30
    width = label_w + 3 * (panel_w + 20) + 10
    height = top + panel_h + 40
    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
        'font-family="sans-serif" font-size="12">' % (width, height, width, height),
        '<rect width="100%" height="100%" fill="white"/>',
        '<text x="10" y="22" font-size="16" font-weight="bold">edge-session side by side: requests per second (higher is better)</text>',
        '<text x="10" y="42" fill="#444">%s; %s cores, %s; Redis %s; wrk on loopback</text>'
        % (html.escape(date), m["nproc"], html.escape(m["cpu"]), html.escape(redis_version)),
    ]
    for i, s in enumerate(stacks):
        y = top + 24 + i * (bar_h + gap)
        parts.append(
            '<text x="%d" y="%d" text-anchor="end">%s %s</text>'
            % (label_w - 8, y + bar_h - 5, html.escape(STACKS[s][0]), html.escape(SHORT[s]))
        )
    for p, req in enumerate(REQUESTS):
        x0 = label_w + p * (panel_w + 20)
        vals = [float(by[(s, req)]["rps"]) if (s, req) in by else 0.0 for s in stacks]
        vmax = max(vals) if vals and max(vals) > 0 else 1.0
        parts.append('<text x="%d" y="%d" font-weight="bold">%s</text>' % (x0, top + 10, html.escape(req)))
        parts.append(
            '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>' % (x0, top + 18, x0, top + panel_h)
        )
        for i, (s, v) in enumerate(zip(stacks, vals)):
            y = top + 24 + i * (bar_h + gap)
            w = (panel_w - 70) * v / vmax
            parts.append(
                '<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>' % (x0, y, w, bar_h, COLORS.get(s, "#333"))
            )
            label = "{:,}".format(int(v))
            if req == "incr" and s in corr and int(corr[s]["lost"]) > 0:
                label += " (lost %d%%)" % round(100 * int(corr[s]["lost"]) / max(1, int(corr[s]["responses_2xx"])))
            parts.append('<text x="%.1f" y="%d" fill="#222">%s</text>' % (x0 + w + 4, y + bar_h - 5, html.escape(label)))
    parts.append(
        '<text x="10" y="%d" fill="#444">(lost N%%): share of increments lost when every connection increments the same session.</text>'
        % (height - 12)
    )
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
