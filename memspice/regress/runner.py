"""Check golden cases (re-simulate stored decks in parallel) and regenerate them on purpose.

A check of one case looks for three independent things:

- **numeric drift**: the stored deck text, re-simulated exactly (with the case's model roots
  and the recorded settings), against the golden table and its tolerances;
- **text drift**: the deck the case builds now against the stored text (normalized); when it
  differs, the newly built deck is simulated too, so the report says which signals the code
  change moves and by how much;
- **environment change**: ngspice version, build options and model-file hashes against the recorded ones.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import pandas as pd

from memspice.circuit.deck import Deck, ModelRoot
from memspice.errors import ConfigError, MemspiceError, SimError
from memspice.netlist.emit import emit
from memspice.regress.cases import GoldenCase, default_cases, select_cases
from memspice.regress.compare import SignalCheck, compare_signals, netlist_diff, result_table
from memspice.regress.golden import Environment, GoldenFiles, GoldenMeta, model_file_hashes, stored_cases
from memspice.sim import SimOptions, SimResult, simulate_text
from memspice.sim.deckcheck import refuse_control_code
from memspice.sim.version import ngspice_build, ngspice_version

Status = Literal["pass", "fail", "error", "unavailable"]
TAMPERED_HINT = "golden decks never run simulator control code; restore the file from version control"


@dataclass
class CaseReport:
    """Outcome of checking one case.

    Attributes:
        case: case name.
        description: what the deck shows.
        status: ``pass``, ``fail`` (numeric or text drift), ``error`` (does not simulate,
            missing or unreadable goldens) or ``unavailable`` (a technology is not installed).
        signals: stored deck re-simulated vs the golden table.
        text_diff: unified diff stored → built now (``""`` when identical after normalization).
        built_signals: the newly built deck vs the golden table (only when the text drifted).
        environment_changes: differences from the recorded environment.
        errors: what went wrong, one line each.
        elapsed_s: simulation wall-clock time (s).
    """

    case: str
    description: str = ""
    status: Status = "pass"
    signals: list[SignalCheck] = field(default_factory=list)
    text_diff: str = ""
    built_signals: list[SignalCheck] = field(default_factory=list)
    environment_changes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def settle(self) -> None:
        """Set :attr:`status` from the findings (unavailable stays unavailable)."""
        if self.status == "unavailable":
            return
        if self.errors:
            self.status = "error"
        elif self.text_diff or any(not s.passed for s in self.signals):
            self.status = "fail"
        else:
            self.status = "pass"


@dataclass
class RegressReport:
    """Outcome of a whole check."""

    directory: Path
    ngspice: str
    cases: list[CaseReport]
    elapsed_s: float

    def passed(self, strict_environment: bool = False) -> bool:
        """No failures or errors (and, when strict, no environment change)."""
        if any(c.status in ("fail", "error") for c in self.cases):
            return False
        return not (strict_environment and any(c.environment_changes for c in self.cases))


@dataclass(frozen=True)
class _Job:
    case: str
    kind: Literal["stored", "built"]
    text: str
    roots: tuple[ModelRoot, ...]
    settings: tuple[tuple[str, str], ...]


def with_root_overrides(roots: Sequence[ModelRoot], overrides: Mapping[str, str | os.PathLike[str]] | None) -> tuple[ModelRoot, ...]:
    """``roots`` with some aliases pointed elsewhere (e.g. a new PDK drop under test)."""
    if not overrides:
        return tuple(roots)
    known = {root.alias for root in roots}
    return tuple(replace(root, directory=str(overrides[root.alias])) if root.alias in overrides else root
                 for root in roots) + tuple(ModelRoot(a, str(d)) for a, d in overrides.items() if a not in known)


def _simulate_jobs(jobs: Sequence[_Job], options: SimOptions, workers: int | None) -> list[SimResult | SimError]:
    """Simulate deck texts in parallel ngspice processes; a failure fills its own slot."""
    def one(job: _Job) -> SimResult | SimError:
        try:
            return simulate_text(job.text, job.roots, job.settings, options)
        except SimError as exc:
            return exc

    n_workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    if n_workers == 1:
        return [one(job) for job in jobs]
    # Each ngspice run is its own process; threads only wait on it.
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        return list(pool.map(one, jobs))


def _build(case: GoldenCase) -> Deck:
    try:
        return case.build()
    except ConfigError:
        raise
    except MemspiceError as exc:
        raise ConfigError(f"case {case.name} cannot be built: {exc}") from exc


def check(
    directory: str | os.PathLike[str],
    cases: Sequence[GoldenCase] | None = None,
    names: Sequence[str] | None = None,
    *,
    options: SimOptions = SimOptions(),
    workers: int | None = None,
    model_roots: Mapping[str, str | os.PathLike[str]] | None = None,
) -> RegressReport:
    """Re-simulate the golden cases in ``directory`` and compare them with their goldens.

    Args:
        directory: golden directory (``netlists/``); always explicit, never the cwd.
        cases: the case registry (default: :func:`default_cases`).
        names: restrict to these cases (stored decks without a case are then not reported).
        options: how ngspice runs (timeout, work directory, executable).
        workers: parallel ngspice processes (default: CPU count).
        model_roots: alias → directory overrides for model roots.

    Every stored deck (and the model files it includes) is checked for ngspice control code
    before anything is simulated.

    Raises:
        ConfigError: ``directory`` does not exist or a name is unknown.
        ControlCodeRefused: a stored deck carries control code (nothing was simulated).
        SimulatorNotFound: ngspice is not installed.
    """
    start = time.monotonic()
    folder = Path(directory)
    if not folder.is_dir():
        raise ConfigError(f"golden directory {folder} does not exist")
    registry = list(default_cases() if cases is None else cases)
    selected = select_cases(registry, names)
    version, build = ngspice_version(options.ngspice), ngspice_build(options.ngspice)
    reports: dict[str, CaseReport] = {}
    jobs: list[_Job] = []
    metas: dict[str, GoldenMeta] = {}
    tables: dict[str, pd.DataFrame] = {}
    for case in selected:
        report = reports[case.name] = CaseReport(case.name, case.description)
        files = GoldenFiles(folder, case.name)
        try:
            deck = _build(case)
        except ConfigError as exc:
            report.status = "unavailable"
            report.errors.append(str(exc))
            continue
        if not files.exists():
            report.errors.append(f"missing golden file(s) {', '.join(files.missing())}; "
                                 "create them with `memspice regress --update`")
            continue
        try:
            meta, tables[case.name] = files.read_meta(), files.read_table()
        except ConfigError as exc:
            report.errors.append(str(exc))
            continue
        metas[case.name] = meta
        stored_text, built_text = files.deck.read_text(), emit(deck)
        roots = with_root_overrides(deck.model_roots, model_roots)
        # A stored deck is data from the repository, not code: never hand control code to ngspice.
        refuse_control_code(stored_text, str(files.deck), deck_dir=folder,
                            cwd_dirs={root.alias: Path(root.directory) for root in roots}, hint=TAMPERED_HINT)
        now = Environment(version, model_file_hashes(stored_text, roots), build)
        report.environment_changes = now.changes_from(meta.environment)
        report.text_diff = netlist_diff(stored_text, built_text, f"{files.deck.name} (golden)", f"{case.name} (built now)")
        jobs.append(_Job(case.name, "stored", stored_text, roots, meta.settings))
        if report.text_diff:
            jobs.append(_Job(case.name, "built", built_text, roots, deck.settings))
    if names is None:
        known = {case.name for case in registry}
        for orphan in stored_cases(folder):
            if orphan not in known:
                reports[orphan] = CaseReport(orphan, errors=[f"stored deck {orphan}.cir has no case in the registry"])
    for job, result in zip(jobs, _simulate_jobs(jobs, options, workers)):
        report, meta = reports[job.case], metas[job.case]
        label = "stored deck" if job.kind == "stored" else "deck built now"
        if isinstance(result, SimError):
            report.errors.append(f"{label} does not simulate: {result}")
            continue
        report.elapsed_s += result.elapsed_s
        if meta.analysis >= len(result.plots):
            report.errors.append(f"{label} produced {len(result.plots)} analyses; golden expects index {meta.analysis}")
            continue
        checks = compare_signals(tables[job.case], meta.x_name, result.plots[meta.analysis].vectors, meta.tolerances)
        if job.kind == "stored":
            report.signals = checks
        else:
            report.built_signals = checks
    for report in reports.values():
        report.settle()
    return RegressReport(folder, f"{version} ({build})", list(reports.values()), time.monotonic() - start)


# ---- update -----------------------------------------------------------------------------------

@dataclass
class UpdateReport:
    """What regenerating one case changed.

    Attributes:
        case: case name.
        status: ``created``, ``updated``, ``unchanged``, ``error`` or ``unavailable``.
        text_diff: unified diff old → new deck text.
        signal_changes: new table vs the old one, under the case's tolerances.
        environment_changes: new environment vs the old recorded one.
        errors: why nothing was written.
    """

    case: str
    status: Literal["created", "updated", "unchanged", "error", "unavailable"] = "unchanged"
    text_diff: str = ""
    signal_changes: list[SignalCheck] = field(default_factory=list)
    environment_changes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def update(
    directory: str | os.PathLike[str],
    cases: Sequence[GoldenCase] | None = None,
    names: Sequence[str] | None = None,
    *,
    options: SimOptions = SimOptions(),
    workers: int | None = None,
    model_roots: Mapping[str, str | os.PathLike[str]] | None = None,
) -> list[UpdateReport]:
    """Regenerate golden files deliberately: build, emit, simulate, write; report what changed.

    A case whose deck fails to simulate keeps its old files.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    selected = select_cases(default_cases() if cases is None else cases, names)
    version, build = ngspice_version(options.ngspice), ngspice_build(options.ngspice)
    reports: list[UpdateReport] = []
    work: list[tuple[UpdateReport, GoldenCase, Deck, _Job]] = []
    for case in selected:
        report = UpdateReport(case.name)
        reports.append(report)
        try:
            deck = _build(case)
        except ConfigError as exc:
            report.status, report.errors = "unavailable", [str(exc)]
            continue
        roots = with_root_overrides(deck.model_roots, model_roots)
        work.append((report, case, deck, _Job(case.name, "built", emit(deck), roots, deck.settings)))
    results = _simulate_jobs([item[3] for item in work], options, workers)
    for (report, case, deck, job), result in zip(work, results):
        if isinstance(result, SimError):
            report.status, report.errors = "error", [f"deck does not simulate: {result}"]
            continue
        if case.analysis >= len(result.plots):
            report.status, report.errors = "error", [f"deck produced {len(result.plots)} analyses, case wants index {case.analysis}"]
            continue
        plot = result.plots[case.analysis]
        x_name = next(iter(plot.vectors))
        try:
            table = result_table(plot.vectors, x_name, list(case.tolerances))
        except KeyError as exc:
            report.status, report.errors = "error", [str(exc.args[0])]
            continue
        meta = GoldenMeta(case.name, case.description, case.analysis, x_name, dict(case.tolerances), deck.settings,
                          Environment(version, model_file_hashes(job.text, job.roots), build))
        files = GoldenFiles(folder, case.name)
        report.status = "updated" if files.exists() else "created"
        if files.exists():
            _describe_changes(report, files, job.text, meta, table)
        files.write(job.text, table, meta)
    return reports


def _describe_changes(report: UpdateReport, files: GoldenFiles, text: str, meta: GoldenMeta, table: pd.DataFrame) -> None:
    try:
        old_meta, old_table = files.read_meta(), files.read_table()
    except ConfigError as exc:
        report.errors.append(f"old golden unreadable, replaced: {exc}")
        return
    report.text_diff = netlist_diff(files.deck.read_text(), text, f"{files.deck.name} (old)", f"{files.deck.name} (new)")
    report.environment_changes = meta.environment.changes_from(old_meta.environment)
    vectors = {name: table[name].to_numpy() for name in table.columns}
    report.signal_changes = compare_signals(old_table, old_meta.x_name, vectors, meta.tolerances)
    unchanged = (not report.text_diff and not report.environment_changes and old_meta.tolerances == meta.tolerances
                 and all(s.passed and s.max_deviation == 0 for s in report.signal_changes))
    if unchanged:
        report.status = "unchanged"
