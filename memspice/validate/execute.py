"""Running validation batches: local process pool or Dask, with resumable per-batch results.

Each batch is a :class:`BatchJob` (a picklable value). :func:`run_job` builds its deck,
simulates it through :mod:`memspice.sim` and returns plain arrays, or a failure record — it
never raises a simulator error, so one bad batch cannot stop the others and nothing
unpicklable crosses a process boundary. The caller (:func:`execute`) writes every finished
batch atomically to ``<run_dir>/batches/batch_NNNNN.npz`` as soon as it arrives; on a
re-run, batches already on disk are loaded instead of simulated again.
"""

from __future__ import annotations

import os
import re
import threading
import time
import zipfile
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from memspice.errors import ConfigError, SimError
from memspice.safe_io import write_atomic
from memspice.netlist.emit import emit
from memspice.sim import SimOptions, simulate_text
from memspice.validate.decks import TransientSpec, ValidationCircuit
from memspice.validate.energy import transient_metrics

Mode = Literal["dc", "transient"]
BATCH_DIR = "batches"
#: ngspice's own report of its peak program size at the end of a batch run.
_PROGRAM_SIZE = re.compile(r"Maximum ngspice program size\s*=\s*([0-9.]+)\s*MB")


@dataclass(frozen=True)
class BatchJob:
    """One deck's worth of samples.

    Attributes:
        index: batch number (names its result file).
        sample_index: ``(S,)`` positions of the batch's samples in the validation set.
        x: ``(S, N)`` input voltages in deck order (V).
        circuit: the network as netlisted (dense or layered).
        mode: ``dc`` (operating points) or ``transient`` (delay and energy).
        transient: time base of the transient mode.
        sim: how ngspice is run.
        reference: transient mode: ``(S, 2M)`` DC operating points ``[outp…, outn…]`` of the last
            layer that each sample settles to (V), NaN where unknown.
    """

    index: int
    sample_index: np.ndarray
    x: np.ndarray
    circuit: ValidationCircuit
    mode: Mode = "dc"
    transient: TransientSpec = field(default_factory=TransientSpec)
    sim: SimOptions = field(default_factory=SimOptions)
    reference: np.ndarray | None = None


@dataclass(frozen=True)
class BatchFailure:
    """A batch that did not produce results.

    Attributes:
        index: batch number.
        message: the simulator's error.
        run_dir: the kept ngspice run directory, if any.
    """

    index: int
    message: str
    run_dir: str | None = None


#: Building and emitting a deck is pure Python (≈ 20 ms for 900 samples of 64-32-10). Threads
#: that do it at once only trade the GIL, so every ngspice of the first round started late
#: (both at ≈ 70 ms with two workers); one at a time, the first starts after one deck's worth.
#: Measured with 2 workers on 1,797 digits samples, 4 runs each, median samples/s: batches of 899
#: 1,386 -> 1,417, batches of 450 1,351 -> 1,368.
_PREPARING = threading.Lock()


class InTurn:
    """A lock its holders take in a fixed order of batch indices (the local pool's deck building).

    Threads pick jobs up in submission order, but which of two fresh threads reaches a plain lock
    first is up to the scheduler: with one worker, batch 1 was sometimes simulated before batch 0.
    Taking turns makes the start order the plan's order on every run.
    """

    def __init__(self, order: Sequence[int]) -> None:
        self._order = list(order)
        self._position = 0
        self._turn = threading.Condition()

    @contextmanager
    def hold(self, index: int):
        """Wait for batch ``index``'s turn, hold the lock while the body runs, then pass it on."""
        with self._turn:
            self._turn.wait_for(lambda: self._order[self._position] == index)
            try:
                yield
            finally:
                self._position += 1
                self._turn.notify_all()


def run_job(job: BatchJob, slots: threading.Semaphore | None = None,
            turns: InTurn | None = None) -> dict[str, Any]:
    """Simulate one batch; return its arrays (``sample_index`` included) or ``{"error": …}``.

    ``slots`` (local pool) bounds the ngspice processes running at once, so a spare thread can
    prepare the next deck while they run; ``turns`` makes decks be built in the plan's order.
    """
    start = time.monotonic()
    preparing: AbstractContextManager[Any] = _PREPARING if turns is None else turns.hold(job.index)
    try:
        with preparing:
            deck = (job.circuit.dc_deck(job.x) if job.mode == "dc"
                    else job.circuit.transient_deck(job.x, job.transient))
            text = emit(deck)
        with slots if slots is not None else nullcontext():
            result = simulate_text(text, deck.model_roots, deck.settings, job.sim)
        if job.mode == "dc":
            arrays = job.circuit.dc_arrays(result.plot(0), job.x)
        else:
            sizes = job.circuit.layer_sizes
            plot = result.plot(0)
            drive_power = job.circuit.transient_drive_power(plot, job.x.shape[1])  # ramps included
            metrics = transient_metrics(plot, len(sizes), sizes[-1], len(job.x), job.transient.period_s,
                                        job.circuit.tech.rails, job.reference, drive_power)
            arrays = {"delay_s": metrics.delay_s, "energy_j": metrics.energy_j,
                      "energy_to_settle_j": metrics.energy_to_settle_j, "input_energy_j": metrics.input_energy_j,
                      "input_energy_to_settle_j": metrics.input_energy_to_settle_j,
                      "tran_outp_last": metrics.final_outp, "wave_time_s": metrics.time_s,
                      "wave_outp": metrics.outp, "wave_power_w": metrics.power_w,
                      "wave_input_power_w": drive_power}
    except SimError as exc:
        run_dir = getattr(exc, "run_dir", None)
        return {"error": str(exc), "run_dir": None if run_dir is None else str(run_dir), "index": job.index}
    arrays["sample_index"] = np.asarray(job.sample_index, dtype=np.int64)
    arrays["elapsed_s"] = np.array(time.monotonic() - start)  # preparation and waits for a free worker included
    arrays["sim_elapsed_s"] = np.array(result.elapsed_s)  # writing the run directory, ngspice, reading its output
    size = _PROGRAM_SIZE.search(result.output)
    arrays["ngspice_program_mb"] = np.array(float(size.group(1)) if size else np.nan)
    return arrays


class BatchStore:
    """Finished batches on disk: ``<run_dir>/batches/<mode>_NNNNN.npz``, written atomically."""

    def __init__(self, run_dir: Path, mode: Mode) -> None:
        self.directory = Path(run_dir) / BATCH_DIR
        self.mode = mode

    def path(self, index: int) -> Path:
        """Result file of batch ``index``."""
        return self.directory / f"{self.mode}_{index:05d}.npz"

    def has(self, index: int) -> bool:
        """True when batch ``index`` finished in an earlier run."""
        return self.path(index).is_file()

    def save(self, index: int, arrays: dict[str, np.ndarray]) -> Path:
        """Write batch ``index`` atomically (temp file + rename)."""
        def writer(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)

        return write_atomic(self.path(index), writer)

    def load(self, index: int, sample_index: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Read batch ``index`` (checking it holds the samples ``sample_index`` when given).

        Raises:
            ConfigError: the file is unreadable, lacks its sample numbers, or holds other samples.
        """
        path = self.path(index)
        try:
            with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as data:
                arrays = {key: np.array(data[key]) for key in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ConfigError(f"stored batch {path} is unreadable ({exc}); delete it to simulate that batch "
                              "again, or use --force") from None
        stored = arrays.get("sample_index")
        if stored is None or stored.dtype.kind not in "iu" or (
                sample_index is not None and not np.array_equal(stored, np.asarray(sample_index))):
            raise ConfigError(f"stored batch {path} does not hold the samples of this run's batch {index}; "
                              "delete it to simulate that batch again, or use --force")
        return arrays

    def clear(self) -> None:
        """Delete every stored batch of this mode."""
        if self.directory.is_dir():
            for path in self.directory.glob(f"{self.mode}_*.npz"):
                path.unlink()


@dataclass
class ExecutionResult:
    """What :func:`execute` did.

    Attributes:
        batches: results by batch number (finished ones only).
        failures: batches that failed, by number order.
        reused: batch numbers loaded from an earlier run.
        simulated: batch numbers simulated in this run.
        elapsed_s: wall-clock time (s).
    """

    batches: dict[int, dict[str, np.ndarray]]
    failures: list[BatchFailure]
    reused: list[int]
    simulated: list[int]
    elapsed_s: float


def _collect(job_index: int, result: dict[str, Any], store: BatchStore, out: ExecutionResult) -> None:
    if "error" in result:
        out.failures.append(BatchFailure(job_index, str(result["error"]), result.get("run_dir")))
        return
    store.save(job_index, result)
    out.batches[job_index] = result
    out.simulated.append(job_index)


def execute(jobs: Sequence[BatchJob], store: BatchStore, *, workers: int | None = None,
            scheduler: str | Any | None = None,
            progress: Callable[[int, int], None] | None = None) -> ExecutionResult:
    """Run ``jobs`` (skipping those already in ``store``) and store each result as it arrives.

    Args:
        jobs: the batches.
        store: where finished batches live (and are reused from).
        workers: local ngspice processes at once (default: CPU count); ignored with Dask.
        scheduler: a Dask scheduler address (``tcp://host:8786``) or a
            ``distributed.Client``; ``None`` runs a local pool of ngspice processes.
        progress: called with ``(done, total)`` after each batch.
    """
    start = time.monotonic()
    out = ExecutionResult({}, [], [], [], 0.0)
    pending = []
    for job in jobs:
        if store.has(job.index):
            out.batches[job.index] = store.load(job.index, job.sample_index)
            out.reused.append(job.index)
        else:
            pending.append(job)
    total, done = len(jobs), len(out.reused)
    if progress:
        progress(done, total)
    if pending and scheduler is None:
        from concurrent.futures import ThreadPoolExecutor, as_completed

        n_workers = max(1, min(workers or os.cpu_count() or 1, len(pending)))
        # Threads only wait on their ngspice subprocesses: `n_workers` of those run at once (one
        # per core), and one more thread builds the next deck meanwhile.
        slots, turns = threading.Semaphore(n_workers), InTurn([job.index for job in pending])
        with ThreadPoolExecutor(max_workers=min(n_workers + 1, len(pending))) as pool:
            futures = {pool.submit(run_job, job, slots, turns): job.index for job in pending}
            for future in as_completed(futures):
                _collect(futures[future], future.result(), store, out)
                done += 1
                if progress:
                    progress(done, total)
    elif pending:
        for index, result in _dask_results(pending, scheduler):
            _collect(index, result, store, out)
            done += 1
            if progress:
                progress(done, total)
    out.failures.sort(key=lambda f: f.index)
    out.elapsed_s = time.monotonic() - start
    return out


def _dask_results(jobs: Sequence[BatchJob], scheduler: str | Any):
    """Yield ``(batch, result)`` from a Dask cluster as batches finish (Dask imported here)."""
    try:
        from distributed import Client, as_completed
    except ImportError as exc:
        raise ConfigError("--scheduler needs Dask: pip install 'dask[distributed]'") from exc
    own = isinstance(scheduler, str)
    try:
        client = Client(scheduler, timeout=30) if own else scheduler
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    try:
        futures = [client.submit(run_job, job, pure=False, key=f"memspice-validate-{job.index}-{os.getpid()}-{id(job)}")
                   for job in jobs]
        index_of = {f.key: job.index for f, job in zip(futures, jobs)}
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as exc:  # a lost worker or a remote error: this batch failed, not the run
                result = {"error": f"{type(exc).__name__}: {exc}"}
            yield index_of[future.key], result
    finally:
        if own:
            client.close()
