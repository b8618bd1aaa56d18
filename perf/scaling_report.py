#!/usr/bin/env python3
"""Scaling-study report: reads DIR/runs/<model>_zero<stage>_np<ranks>.jsonl (the metrics files of
`deepmpi train --metrics-file`, whose last line is the run summary) and writes DIR/scaling.csv,
DIR/scaling.md and DIR/scaling.png (gnuplot: tokens/s against ranks, one line per model and
stage). Scaling efficiency = tokens/s per rank over that of the smallest rank count of the same
model and stage (the per-rank batch is fixed: weak scaling).
Usage: scaling_report.py DIR [--command CMD] [--launcher NAME]
"""
import argparse
import csv
import glob
import json
import os
import re
import shutil
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--command", default="")
    ap.add_argument("--launcher", default="")
    a = ap.parse_args()
    rows = []
    for path in sorted(glob.glob(os.path.join(a.dir, "runs", "*.jsonl"))):
        m = re.match(r"(.+)_zero(\d)_np(\d+)\.jsonl$", os.path.basename(path))
        if not m:
            continue
        summ = [json.loads(l) for l in open(path) if '"summary"' in l]
        if not summ:
            sys.exit(f"scaling_report: {path} has no summary record (did the run finish?)")
        s = summ[-1]
        states = s["params_bytes"] + s["grads_bytes"] + s["masters_bytes"] + s["optimizer_states_bytes"]
        rows.append(dict(model=m.group(1), stage=int(m.group(2)), ranks=int(m.group(3)),
                         tokens_per_s=s["median_tokens_per_s"], tflops=s["median_tflops"], mfu=s["median_mfu"],
                         step_ms=s["median_step_ms"], peak_rss_mib=s["peak_rss_bytes_max_rank"] / 2**20,
                         model_states_mib=states / 2**20))
    if not rows:
        sys.exit(f"scaling_report: no runs in {a.dir}/runs")
    rows.sort(key=lambda r: (r["model"], r["stage"], r["ranks"]))
    base = {}
    for r in rows:
        base.setdefault((r["model"], r["stage"]), r)
    for r in rows:
        b = base[(r["model"], r["stage"])]
        r["tokens_per_s_per_rank"] = r["tokens_per_s"] / r["ranks"]
        r["efficiency"] = r["tokens_per_s_per_rank"] / (b["tokens_per_s"] / b["ranks"])
    cols = ["model", "stage", "ranks", "tokens_per_s", "tokens_per_s_per_rank", "tflops", "mfu", "step_ms",
            "peak_rss_mib", "model_states_mib", "efficiency"]
    with open(os.path.join(a.dir, "scaling.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: (round(r[k], 4) if isinstance(r[k], float) else r[k]) for k in cols})
    with open(os.path.join(a.dir, "scaling.md"), "w") as f:
        if a.command:
            f.write(f"Made by `{a.command}` (launcher: {a.launcher}).\n\n")
        f.write("| model | ZeRO stage | ranks | tokens/s | tokens/s per rank | TFLOP/s | MFU | step ms | "
                "peak RSS per rank (MiB) | model states per rank (MiB) | scaling efficiency |\n")
        f.write("|---|---|---|---|---|---|---|---|---|---|---|\n")
        for r in rows:
            f.write(f"| {r['model']} | {r['stage']} | {r['ranks']} | {r['tokens_per_s']:.0f} | "
                    f"{r['tokens_per_s_per_rank']:.0f} | {r['tflops']:.3f} | {100 * r['mfu']:.1f}% | "
                    f"{r['step_ms']:.1f} | {r['peak_rss_mib']:.1f} | {r['model_states_mib']:.2f} | "
                    f"{r['efficiency']:.2f} |\n")
    gp = shutil.which("gnuplot")
    png = os.path.join(a.dir, "scaling.png")
    if not gp:
        print("scaling_report: gnuplot not found (apt-get install gnuplot-nox): no scaling.png", file=sys.stderr)
    else:
        series = sorted(base)
        data = os.path.join(a.dir, "scaling.dat")
        with open(data, "w") as f:
            for key in series:
                for r in rows:
                    if (r["model"], r["stage"]) == key:
                        f.write(f"{r['ranks']} {r['tokens_per_s']:.3f}\n")
                f.write("\n\n")
        plots = ", ".join(f"'{data}' index {i} with linespoints title '{m} ZeRO-{st}'"
                          for i, (m, st) in enumerate(series))
        script = (f"set terminal png size 900,600\nset output '{png}'\nset title 'deepmpi scaling study'\n"
                  f"set xlabel 'ranks'\nset ylabel 'tokens/s'\nset logscale x 2\nset key left top\n"
                  f"set grid\nplot {plots}\n")
        subprocess.run([gp], input=script, text=True, check=True)
    print(open(os.path.join(a.dir, "scaling.md")).read())
    print(f"wrote {a.dir}/scaling.md, {a.dir}/scaling.csv" + (f", {png}" if gp else ""))


if __name__ == "__main__":
    main()
