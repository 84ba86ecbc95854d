"""Run the fault scenarios and write docs/reliability.md from what they record.

    .venv/bin/python scripts/reliability_report.py [--output docs/reliability.md]

Each scenario (tests/integration/faults) appends its tally as one JSON line to the file
named by RAYFN_RELIABILITY_LOG; this command runs them under pytest, then turns the
tallies and the pytest outcomes into the report. Nothing in the report is typed by hand.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = "tests/integration/faults"
COLUMNS = (
    ("accepted", "calls accepted"),
    ("completed", "completed with the right result"),
    ("failed", "ended with an error"),
    ("lost", "lost"),
    ("ran_twice", "ran more than once"),
    ("faults_injected", "faults injected"),
)


def run_scenarios(log: Path, junit: Path, extra: list[str]) -> int:
    env = {**os.environ, "RAYFN_RELIABILITY_LOG": str(log), "RAY_AUTH_MODE": "token"}
    command = [sys.executable, "-m", "pytest", SCENARIOS, "-m", "fault", "-q",
               "-p", "no:cacheprovider", f"--junitxml={junit}", *extra]
    return subprocess.run(command, cwd=ROOT, env=env).returncode


def test_outcomes(junit: Path) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    if not junit.exists():
        return outcomes
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "")
        if case.find("failure") is not None or case.find("error") is not None:
            outcomes[name] = "failed"
        elif case.find("skipped") is not None:
            outcomes[name] = "skipped"
        else:
            outcomes[name] = "passed"
    return outcomes


def machine() -> str:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip() or "unknown"
    return (f"{os.cpu_count()} cores, {mem_gib:.0f} GiB, {platform.system()} "
            f"{platform.machine()}, Python {platform.python_version()}, "
            f"Ray {metadata.version('ray')}, rayfn {metadata.version('rayfn')} "
            f"(commit {commit})")


def render(tallies: list[dict[str, Any]], outcomes: dict[str, str], code: int) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lost = sum(t["lost"] for t in tallies)
    lines = [
        "# Reliability",
        "",
        "Every call a client holds an ID for ends in a result it can read, an error it can",
        "read, or a cancellation it asked for, through any crash of any process. Each",
        "scenario below submits calls, injects its fault into real processes, waits for every",
        "call to end and checks each result. *Lost* counts accepted calls without a readable",
        "outcome (none by the deadline, an unknown ID, or a wrong value); it must be 0.",
        "*Ran more than once* is allowed: execution is at-least-once, and the functions count",
        "their own runs.",
        "",
        "This file is written by `.venv/bin/python scripts/reliability_report.py`, from what",
        "the scenarios in `tests/integration/faults/` record while they run (they are also",
        "part of the test suite).",
        "",
        f"- Run: {now}; pytest exit code {code}; {len(tallies)} scenarios recorded; "
        f"**{lost} calls lost**.",
        f"- Machine: {machine()}.",
        "",
        "## Summary",
        "",
        "| scenario | " + " | ".join(title for _, title in COLUMNS) + " | seconds | test |",
        "|---" * (len(COLUMNS) + 3) + "|",
    ]
    for t in tallies:
        cells = [str(t[key]) for key, _ in COLUMNS]
        lines.append(f"| {t['scenario']} | " + " | ".join(cells)
                     + f" | {t['seconds']:.0f} | {t.get('outcome', '?')} |")
    recorded = {t.get("test") for t in tallies}
    unrecorded = [name for name, outcome in outcomes.items()
                  if name not in recorded and outcome != "passed"]
    if unrecorded:
        lines += ["", "Tests that ended before recording a tally: "
                  + ", ".join(f"`{n}` ({outcomes[n]})" for n in unrecorded) + "."]
    for t in tallies:
        lines += ["", f"## {t['scenario']}", "", f"Fault: {t['fault']}.", "",
                  "| measure | value |", "|---|---|"]
        lines += [f"| {title} | {t[key]} |" for key, title in COLUMNS]
        lines.append(f"| seconds, submit to last outcome | {t['seconds']:.1f} |")
        lines.append(f"| test | `{t.get('test', '?')}`: {t.get('outcome', '?')} |")
        notes = t.get("notes") or []
        if notes:
            lines += [""] + [f"- {note}" for note in notes[:20]]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "reliability.md")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments, after --")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log, junit = Path(tmp) / "tallies.jsonl", Path(tmp) / "junit.xml"
        code = run_scenarios(log, junit, args.pytest_args)
        tallies = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() \
            else []
        outcomes = test_outcomes(junit)
    for t in tallies:
        t["outcome"] = outcomes.get(t.get("test", ""), "?")
    tallies.sort(key=lambda t: t["scenario"])
    args.output.write_text(render(tallies, outcomes, code))
    print(f"wrote {args.output} ({len(tallies)} scenarios, pytest exit code {code})")
    return code


if __name__ == "__main__":
    sys.exit(main())
