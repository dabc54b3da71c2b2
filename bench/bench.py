#!/usr/bin/env python3
"""secrun's benchmark harness: secrun against the sandboxes its users would otherwise pick.

    make bench                        full run (~2-4 min), writes docs/benchmarks.md + .png
    .venv/bin/python bench/bench.py --quick     few rounds, writes build/bench/benchmarks.md

Every figure that is compared is measured in the same run, interleaved: round r launches every
tool once, in an order rotated by r, so drift of the machine (frequency, noisy neighbours) hits
all tools alike.  Ratios are medians of the per-round ratios.  See docs/benchmarks.md, section
"Method", for what each figure means and how it is taken.

This file only wires the run together: peers.py sets up the peers and the tools' command lines,
measure.py times launches (latency, throughput, seccomp overhead), memory.py measures their
memory, launchpath.py profiles secrun's own launch path, and report.py writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

from harness import DOCS, NOTES, SECRUN, WORK, log, note, run
from launchpath import cprofile_top, importtime, phases, stage_timings, strace_summary
from measure import BENCHEXEC, build_c, check, latency, seccomp_overhead, throughput
from memory import resident_while_running, tree_peak
from peers import CrunNamespace, install_peers, make_tools, seccomp_bpf
from report import ensure_matplotlib, load_pyplot, machine, plot, summary, write_markdown


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few rounds; writes build/bench/")
    ap.add_argument("--rounds", type=int, help="latency rounds (default 60, quick 8)")
    ap.add_argument("--out", help="directory for benchmarks.md and .png (default docs/, "
                    "quick: build/bench/)")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install peers")
    ap.add_argument("--only", help="comma-separated tool keys to keep (plus the references)")
    args = ap.parse_args(argv)
    quick = args.quick
    P = {"quick": quick, "rounds": args.rounds or (8 if quick else 60), "warmup": 2,
         "tp_n": 100, "tp_par": 2, "tp_rounds": 1 if quick else 3, "mem_runs": 2 if quick else 5,
         "loop_n": 1_000_000 if quick else 5_000_000, "loop_rounds": 2 if quick else 5,
         "import_runs": 3 if quick else 9}
    out_dir = args.out or (WORK if quick else DOCS)
    os.makedirs(WORK, exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)
    if not os.path.exists(SECRUN):
        raise SystemExit(f"bench: {SECRUN} missing: run `make setup` first")
    t_start = time.monotonic()
    if os.getloadavg()[0] > 1.0:
        note(f"the machine was busy at the start (load average {os.getloadavg()[0]:.1f} on "
             f"{os.cpu_count()} cores): absolute times are inflated; the interleaved ratios "
             "are less affected")
    if not args.no_install:
        install_peers()
    have_mpl = ensure_matplotlib()
    bpf = seccomp_bpf()
    loop = build_c("loop")
    BENCHEXEC[0] = build_c("benchexec")
    ns = None
    if shutil.which("crun") and os.geteuid() == 0 and BENCHEXEC[0]:
        try:
            ns = CrunNamespace().__enter__()
        except OSError as e:
            note(f"crun: {e}")
            ns = None
    try:
        tools = make_tools(ns, bpf, quick)
        if args.only:
            keep = set(args.only.split(",")) | {"true", "python"}
            tools = [t for t in tools if t.key in keep]
        tools = [t for t in tools if check(t)]
        if not any(t.key == "secrun-strict" for t in tools):
            tools = [t for t in tools if t.key != "secrun-strict-nocache"]
        res: dict = {"machine": machine(), "params": P,
                     "tools": [{"key": t.key, "label": t.label, "shown": t.shown(),
                                "confinement": t.confinement, "kind": t.kind} for t in tools],
                     "labels": {t.key: t.label for t in tools},
                     "strict_profile": run([SECRUN, "profiles", "show", "strict"]).stdout}
        log(f"launch latency: {len(tools)} tools x {P['rounds']} rounds")
        res["latency"] = latency(tools, P["rounds"], P["warmup"])
        timed = [t for t in tools if t.key not in ("python", "secrun-strict-nocache", "true-ns")]
        log("throughput")
        res["throughput"] = throughput(timed, P["tp_n"], P["tp_par"], P["tp_rounds"])
        log("memory")
        res["tree_peak"], res["maxrss"] = tree_peak(tools, P["mem_runs"])
        res["resident"] = resident_while_running(timed)
        if loop:
            log("seccomp runtime overhead")
            res["seccomp"] = seccomp_overhead(loop, P["loop_n"], P["loop_rounds"], bpf)
        log("launch path profile")
        res["importtime"] = importtime("unconfined", P["import_runs"])
        res["importtime_strict"] = importtime("strict", P["import_runs"])
        res["phases"] = {p: phases(p, P["import_runs"]) for p in ("unconfined", "strict")}
        res["stages"] = stage_timings("strict")
        res["strace"] = strace_summary("strict")
        res["cprofile"] = cprofile_top("strict")
    finally:
        if ns is not None:
            ns.__exit__(None, None, None)
    res["notes"] = NOTES
    res["elapsed_s"] = time.monotonic() - t_start
    with open(os.path.join(WORK, "results.json"), "w") as f:
        json.dump(res, f, indent=1, default=str)
    png = os.path.join(out_dir, "benchmarks.png")
    if have_mpl:
        plot(load_pyplot(), res, png)
    md = os.path.join(out_dir, "benchmarks.md")
    write_markdown(res, md, "benchmarks.png")
    summary(res)
    log(f"wrote {md} ({res['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
