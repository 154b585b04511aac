"""Experiment configuration: one TOML file per experiment, validated here and only here.

Relative paths are resolved against the working directory (run from the repository root).
Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DataConfig:
    csv: list[str] = field(default_factory=list)  # files or folders of flow CSVs
    captures: str = ""  # TOML file of capture label rules ("" = none)
    group_by: str = "time_window"  # grouped split key for CSV rows: day | host | time_window
    window_s: float = 600.0
    dedupe: bool = True
    split: str = "stratified"  # the split the shipped model is trained on
    val: float = 0.15
    test: float = 0.2
    capture_max_copies: int = 1  # identical capture flows kept per capture (floods repeat)
    capture_repeat: int = 1
    # True: every capture flow trains the stratified (shipped) model and capture generalisation
    # is measured by the grouped split (whole captures held out) and the replay
    captures_all_train: bool = False  # capture flows are few: repeat them in the training split
    max_rows_per_class: int = 0  # 0 = no cap (a cap keeps tests fast)
    synth_seeds: int = 0  # > 0: add this many generated scenarios per kind (synth_traffic.py)


@dataclass(frozen=True)
class ModelConfig:
    hidden: list[int] = field(default_factory=lambda: [128, 64])
    activation: str = "relu"  # relu | tanh | silu
    dropout: float = 0.1
    norm: str = "batch"  # batch | layer | none
    clip_z: float = 10.0  # standardised features are clipped to +-clip_z


@dataclass(frozen=True)
class TrainConfig:
    loss: str = "ce"  # ce | mse
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    epochs: int = 30
    batch_size: int = 512
    schedule: str = "cosine"  # cosine | step | none
    patience: int = 6  # epochs without a better validation macro-F1 before stopping
    keep: str = "best"  # best (epoch with the best validation macro-F1) | last
    class_weighting: str = "inverse_sqrt"  # inverse | inverse_sqrt | none
    benign_weight: float = 1.0  # extra loss weight on BENIGN rows (fewer false alarms)
    # extra weight per cell prefix "<family>|<origin>[|file]", e.g. {"BENIGN|capture" = 4.0}
    cell_weight: dict[str, float] = field(default_factory=dict)
    # cut cell names to this many characters (0: never). 20 reproduces the cells that
    # models 0.3.0 and 0.4.0 were trained with (a fixed-width array truncated them then)
    cell_name_width: int = 0
    balanced_sampling: bool = False
    device: str = "auto"  # auto | cpu | cuda


@dataclass(frozen=True)
class AugmentConfig:
    enabled: bool = False
    rare_below: int = 1000  # classes with fewer training rows than this are augmented ...
    target_rows: int = 1000  # ... up to this many rows
    jitter_std: float = 0.05  # Gaussian noise in standardised feature space
    mixup: bool = True  # convex mix of two rows of the same class
    # packet-timing augmentation of capture flows (raw space, any class): copies with every
    # time feature scaled by exp(u), u ~ U(-time_scale, time_scale), rates by exp(-u)
    time_scale: float = 0.0
    time_scale_copies: int = 0


@dataclass(frozen=True)
class ExportConfig:
    opset: int = 17
    attributions: bool = True
    quantize: bool = True
    threshold: float = 0.5
    # > 0: raise the threshold until at most this share of validation benign flows alerts
    threshold_max_fpr: float = 0.0
    parity_tol: float = 1e-4


@dataclass(frozen=True)
class RunConfig:
    name: str = "netwarden"
    version: str = "0.1.0"
    seed: int = 7
    runs_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_CHOICES = {
    "data.group_by": ("day", "host", "time_window"),
    "data.split": ("stratified", "grouped"),
    "model.activation": ("relu", "tanh", "silu"),
    "model.norm": ("batch", "layer", "none"),
    "train.loss": ("ce", "mse"),
    "train.optimizer": ("adamw", "sgd"),
    "train.schedule": ("cosine", "step", "none"),
    "train.class_weighting": ("inverse", "inverse_sqrt", "none"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.keep": ("best", "last"),
}


def _build(cls: type[Any], d: dict[str, Any], prefix: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in d.items():
        where = f"{prefix}{key}"
        if key not in known:
            raise ValueError(f"config: unknown key '{where}' (known: {', '.join(known)})")
        sub = _SECTIONS.get(key) if not prefix else None
        if sub is not None:
            if not isinstance(value, dict):
                raise ValueError(f"config: '{where}' must be a table, got {value!r}")
            kwargs[key] = _build(sub, value, f"{key}.")
            continue
        choices = _CHOICES.get(where)
        if choices is not None and value not in choices:
            raise ValueError(f"config: '{where}' must be one of {choices}, got {value!r}")
        kwargs[key] = value
    return cls(**kwargs)


_SECTIONS: dict[str, type[Any]] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "augment": AugmentConfig,
    "export": ExportConfig,
}


def _check(cfg: RunConfig) -> None:
    d, t = cfg.data, cfg.train
    if not 0 < d.val < 1 or not 0 < d.test < 1 or d.val + d.test >= 1:
        raise ValueError(f"config: data.val + data.test must be in (0, 1), got {d.val}+{d.test}")
    if not cfg.model.hidden or any(h <= 0 for h in cfg.model.hidden):
        raise ValueError(f"config: model.hidden must be positive sizes, got {cfg.model.hidden}")
    if t.epochs <= 0 or t.batch_size <= 0 or t.lr <= 0:
        raise ValueError("config: train.epochs, train.batch_size and train.lr must be > 0")
    if not 0 <= cfg.model.dropout < 1:
        raise ValueError(f"config: model.dropout must be in [0, 1), got {cfg.model.dropout}")
    if not 0 < cfg.export.threshold < 1:
        raise ValueError(f"config: export.threshold must be in (0, 1), got {cfg.export.threshold}")


def from_dict(d: dict[str, Any]) -> RunConfig:
    """Build and validate a RunConfig.

    Raises:
        ValueError: unknown key, bad choice or out-of-range value (the key is named).
    """
    cfg: RunConfig = _build(RunConfig, d, "")
    _check(cfg)
    return cfg


def load(path: Path) -> RunConfig:
    """Read and validate a TOML experiment file."""
    with path.open("rb") as fh:
        return from_dict(tomllib.load(fh))
