"""Renderings of regression results: a text table, JSON, and JUnit XML for CI systems."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from memspice.regress.compare import SignalCheck
from memspice.regress.runner import CaseReport, RegressReport, UpdateReport

_HEADER = ("deck", "signal", "max deviation", "tolerance", "result")


def _number(value: float) -> str:
    return f"{value:.3e}" if math.isfinite(value) else "-"


def _signal_row(case: str, check: SignalCheck, prefix: str = "") -> tuple[str, ...]:
    result = "pass" if check.passed else ("FAIL: " + check.note if check.note else f"FAIL (x{check.worst_ratio:.1f})")
    return (case, prefix + check.signal, _number(check.max_deviation), check.tolerance.describe(), result)


def _rows(case: CaseReport) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    if case.status == "unavailable":
        return [(case.case, "-", "-", "-", "unavailable: " + "; ".join(case.errors))]
    rows += [(case.case, "-", "-", "-", "ERROR: " + error) for error in case.errors]
    rows += [_signal_row(case.case, check) for check in case.signals]
    if case.text_diff:
        rows.append((case.case, "(netlist text)", "-", "-", "FAIL: deck built now differs from stored deck"))
        rows += [_signal_row(case.case, check, "built: ") for check in case.built_signals if not check.passed]
    if case.environment_changes:
        rows.append((case.case, "(environment)", "-", "-", "environment changed: " + "; ".join(case.environment_changes)))
    return rows


def format_table(rows: Sequence[tuple[str, ...]], header: tuple[str, ...] = _HEADER) -> str:
    """Fixed-width text table (the last column is not padded)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, tuple("-" * len(h) for h in header), *rows]:
        lines.append("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]]).rstrip())
    return "\n".join(lines) + "\n"


def check_text(report: RegressReport, strict_environment: bool = False) -> str:
    """The check as a table, then text diffs, then a one-line summary."""
    rows = [row for case in report.cases for row in _rows(case)]
    parts = [format_table(rows)]
    for case in report.cases:
        if case.text_diff:
            parts.append(f"\n{case.case}: netlist text drift (normalized, golden -> built now):\n{case.text_diff}")
    counts = {status: sum(c.status == status for c in report.cases) for status in ("pass", "fail", "error", "unavailable")}
    env = sum(bool(c.environment_changes) for c in report.cases)
    verdict = "PASSED" if report.passed(strict_environment) else "FAILED"
    parts.append(
        f"\n{verdict}: {counts['pass']} passed, {counts['fail']} failed, {counts['error']} errors, "
        f"{counts['unavailable']} unavailable, {env} with environment changes "
        f"(ngspice {report.ngspice}, {report.elapsed_s:.2f} s, goldens in {report.directory})\n"
    )
    return "".join(parts)


def check_json(report: RegressReport, strict_environment: bool = False) -> dict[str, object]:
    """Machine-readable form of a check (JSON-serializable)."""
    return {
        "directory": str(report.directory),
        "ngspice": report.ngspice,
        "passed": report.passed(strict_environment),
        "elapsed_s": report.elapsed_s,
        "cases": [
            {
                "case": c.case,
                "description": c.description,
                "status": c.status,
                "signals": [s.to_json() for s in c.signals],
                "text_drift": bool(c.text_diff),
                "text_diff": c.text_diff,
                "built_signals": [s.to_json() for s in c.built_signals],
                "environment_changed": bool(c.environment_changes),
                "environment_changes": c.environment_changes,
                "errors": c.errors,
                "elapsed_s": c.elapsed_s,
            }
            for c in report.cases
        ],
    }


def junit_xml(report: RegressReport, strict_environment: bool = False) -> str:
    """JUnit XML: one test per (deck, signal), one per deck text, one per deck environment."""
    suite = ET.Element("testsuite", name="memspice.regress", time=f"{report.elapsed_s:.3f}")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}

    def add(classname: str, name: str, kind: str | None = None, message: str = "", body: str = "") -> None:
        counts["tests"] += 1
        test = ET.SubElement(suite, "testcase", classname=classname, name=name)
        if kind is not None:
            counts[{"failure": "failures", "error": "errors", "skipped": "skipped"}[kind]] += 1
            ET.SubElement(test, kind, message=message).text = body or message

    for case in report.cases:
        classname = f"netlists.{case.case}"
        if case.status == "unavailable":
            add(classname, "deck", "skipped", "; ".join(case.errors))
            continue
        for error in case.errors:
            add(classname, "deck", "error", error)
        for check in case.signals:
            if check.passed:
                add(classname, check.signal)
            else:
                message = check.note or (f"max deviation {check.max_deviation:.3e} at x={check.at_x:.6g} exceeds "
                                         f"{check.tolerance.describe()} (x{check.worst_ratio:.1f})")
                add(classname, check.signal, "failure", message)
        if not case.errors:
            moved = [f"{s.signal} (max deviation {_number(s.max_deviation)})" for s in case.built_signals if not s.passed]
            message = "deck built now differs from the stored deck" + (
                "; it moves " + ", ".join(moved) if moved else "; its signals stay within tolerance")
            add(classname, "netlist text", "failure" if case.text_diff else None, message, case.text_diff)
            env_failure = "failure" if (strict_environment and case.environment_changes) else None
            add(classname, "environment", env_failure, "; ".join(case.environment_changes))
    for key, value in counts.items():
        suite.set(key, str(value))
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def update_text(reports: Sequence[UpdateReport]) -> str:
    """What ``--update`` wrote, per case, with text diffs and signal changes."""
    rows: list[tuple[str, ...]] = []
    details: list[str] = []
    for r in reports:
        if r.errors and r.status in ("error", "unavailable"):
            rows.append((r.case, "-", "-", "-", f"{r.status}: " + "; ".join(r.errors)))
            continue
        changed = [s for s in r.signal_changes if not (s.passed and s.max_deviation == 0)]
        if not changed:
            rows.append((r.case, "-", "-", "-", r.status))
        for s in changed:
            verdict = "within tolerance" if s.passed else "beyond tolerance"
            rows.append((r.case, s.signal, _number(s.max_deviation), s.tolerance.describe(), f"{r.status}: {s.note or verdict}"))
        if r.environment_changes:
            rows.append((r.case, "(environment)", "-", "-", "; ".join(r.environment_changes)))
        if r.text_diff:
            details.append(f"\n{r.case}: netlist text changed:\n{r.text_diff}")
    header = ("deck", "signal", "max change", "tolerance", "status")
    return format_table(rows, header) + "".join(details)
