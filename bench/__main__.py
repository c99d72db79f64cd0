"""``python -m bench``: run the scenarios, write the Markdown report of ratios.

python -m bench                      # every scenario, full sizes, bench/results/latest.md
python -m bench --quick --out r.md   # smallest sizes (the smoke test's run)
python -m bench --only tcp,load      # a subset
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.harness import Context, Unavailable, binary
from bench.report import Section, render
from bench.scenarios import SCENARIOS

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.md"
PEERS = {
    "redis_exporter": ("prometheus-redis-exporter", "prometheus-redis-exporter"),
    "blackbox_exporter": ("prometheus-blackbox-exporter", "prometheus-blackbox-exporter"),
    "postgres_exporter": ("prometheus-postgres-exporter", "prometheus-postgres-exporter"),
    "wrk": ("wrk", "wrk"),
}


def peer_versions() -> dict[str, str]:
    found = {}
    for name, (exe, package) in PEERS.items():
        try:
            path = binary(exe, package)
        except Unavailable:
            found[name] = "(not installed)"
            continue
        flag = "-v" if name == "wrk" else "--version"
        run = subprocess.run([path, flag], capture_output=True, text=True, timeout=10)
        match = re.search(r"\d+\.\d+\.\d+", run.stdout + run.stderr)
        found[name] = match.group(0) if match else "?"
    return found


def loadavg() -> str:
    """The 1-minute load average: other work on the machine skews every number."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="smallest sizes, two runs")
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of {','.join(SCENARIOS)}"
    )
    parser.add_argument(
        "--repeat", type=int, default=0, help="runs per measurement (default 5, quick 2)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report path (%(default)s)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    repeat = args.repeat or (2 if args.quick else 5)
    began = time.monotonic()
    load_before = loadavg()
    sections: list[Section] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        ctx = Context(workdir=Path(tmp), quick=args.quick, repeat=repeat)
        for name in names:
            scenario = SCENARIOS[name]
            ctx.log(f"bench: {name} ...")
            started = time.monotonic()
            try:
                section = scenario.run(ctx)
            except Unavailable as exc:
                section = Section(name, scenario.TITLE, scenario.WHAT, skipped=str(exc))
            except Exception as exc:
                traceback.print_exc()
                section = Section(
                    name,
                    scenario.TITLE,
                    scenario.WHAT,
                    skipped=f"failed: {type(exc).__name__}: {exc}",
                )
            ctx.log(
                f"bench: {name} done in {time.monotonic() - started:.1f}s"
                + (f" (skipped: {section.skipped})" if section.skipped else "")
            )
            sections.append(section)
    text = render(
        sections,
        quick=args.quick,
        repeat=repeat,
        peers=peer_versions(),
        elapsed=time.monotonic() - began,
        load=(load_before, loadavg()),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"bench: report written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
