"""The training loop: class weighting or balanced sampling, CE or MSE loss, SGD or AdamW,
an LR schedule, and early stopping on validation macro-F1 (best weights are kept)."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from .augment import augment
from .config import AugmentConfig, TrainConfig
from .evaluation import macro_f1
from .model import Classifier

log = logging.getLogger(__name__)


@dataclass
class History:
    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_macro_f1: float = -1.0
    augmented_rows: int = 0


def pick_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def row_weights(
    y: npt.NDArray[np.int64],
    cells: npt.NDArray[np.str_],
    how: str,
    *,
    benign_weight: float,
    cell_weight: dict[str, float] | None = None,
) -> npt.NDArray[np.float32]:
    """Per-row loss weights from the size of each row's cell (class x origin), mean 1.

    "inverse" gives every cell the same total weight, "inverse_sqrt" a total that grows with
    the square root of its size; BENIGN rows are then scaled by ``benign_weight`` (> 1 trades
    attack recall for fewer false alarms on unfamiliar benign traffic).
    """
    _, inv, counts = np.unique(cells, return_inverse=True, return_counts=True)
    per = counts[inv].astype(float)
    w = {"inverse": 1.0 / per, "inverse_sqrt": 1.0 / np.sqrt(per)}.get(how, np.ones_like(per))
    w = w * np.where(y == 0, benign_weight, 1.0)
    for prefix, factor in (cell_weight or {}).items():  # "BENIGN|capture" hits every capture
        w = np.where(np.char.startswith(cells.astype(str), prefix), w * factor, w)
    return (w / w.mean()).astype(np.float32)


def _loss_fn(cfg: TrainConfig, n: int):  # type: ignore[no-untyped-def]
    """Weighted per-row loss: cross-entropy, or squared error of the softmax to one-hot."""
    if cfg.loss == "ce":
        ce = nn.CrossEntropyLoss(reduction="none")
        return lambda logits, y, w: (ce(logits, y) * w).sum() / w.sum()

    def mse(logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(logits, dim=1)
        per_row = ((p - nn.functional.one_hot(y, n).float()) ** 2).sum(dim=1)
        return (per_row * w).sum() / w.sum()

    return mse


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            nesterov=True,
        )
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def _schedule(opt: torch.optim.Optimizer, cfg: TrainConfig):  # type: ignore[no-untyped-def]
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, cfg.epochs // 3), gamma=0.3)
    return None


@torch.no_grad()
def predict_proba(
    model: Classifier, x: npt.NDArray[np.float32], device: torch.device
) -> np.ndarray:
    """Softmax probabilities for raw features, in batches of 8192."""
    model.eval()
    out = []
    for i in range(0, len(x), 8192):
        xb = torch.from_numpy(np.ascontiguousarray(x[i : i + 8192])).to(device)
        out.append(torch.softmax(model(xb), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def fit(
    model: Classifier,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    *,
    cells: np.ndarray,
    n_classes: int,
    cfg: TrainConfig,
    aug: AugmentConfig,
    seed: int,
) -> History:
    """Train in place on (x_train, y_train, x_val, y_val) raw features; keep the best epoch.

    ``cells`` names each training row's weighting cell (family and origin).
    """
    x_tr, y_tr, x_val, y_val = data
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    device = pick_device(cfg.device)
    model.to(device)
    with torch.no_grad():
        z_tr = model.pre(torch.from_numpy(x_tr).to(device)).cpu().numpy()
    hist = History()
    if aug.enabled:
        z_new, y_new, c_new = augment(z_tr, y_tr, cells, aug, rng)
        hist.augmented_rows = len(y_new)
        z_tr, y_tr = np.concatenate([z_tr, z_new]), np.concatenate([y_tr, y_new])
        cells = np.concatenate([cells, c_new])
    how = "none" if cfg.balanced_sampling else cfg.class_weighting
    wt = torch.from_numpy(
        row_weights(y_tr, cells, how, benign_weight=cfg.benign_weight, cell_weight=cfg.cell_weight)
    ).to(device)
    loss_fn = _loss_fn(cfg, n_classes)
    opt = _optimizer(model, cfg)
    sched = _schedule(opt, cfg)
    zt, yt = torch.from_numpy(z_tr).to(device), torch.from_numpy(y_tr).to(device)
    best_state, bad_epochs = None, 0
    for epoch in range(cfg.epochs):
        model.train()
        order = _epoch_order(y_tr, n_classes, cfg.balanced_sampling, rng)
        total = 0.0
        for i in range(0, len(order), cfg.batch_size):
            b = torch.from_numpy(order[i : i + cfg.batch_size]).to(device)
            if len(b) < 2:
                continue
            loss = loss_fn(model.logits_from_z(zt[b]), yt[b], wt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        if sched is not None:
            sched.step()
        f1 = macro_f1(y_val, predict_proba(model, x_val, device).argmax(1), n_classes)
        hist.epochs.append({"epoch": epoch, "loss": total / len(order), "val_macro_f1": f1})
        log.info("epoch %d loss %.4f val macro-F1 %.4f", epoch, total / len(order), f1)
        if f1 > hist.best_val_macro_f1:
            hist.best_val_macro_f1, hist.best_epoch = f1, epoch
            best_state, bad_epochs = copy.deepcopy(model.state_dict()), 0
        else:
            bad_epochs += 1
            if bad_epochs >= cfg.patience:
                break
    if best_state is not None and cfg.keep == "best":
        model.load_state_dict(best_state)
    model.to("cpu").eval()
    return hist


def _epoch_order(
    y: npt.NDArray[np.int64], n: int, balanced: bool, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    if not balanced:
        return rng.permutation(len(y))
    # balanced sampling: every class drawn equally often, epoch length unchanged
    counts = np.bincount(y, minlength=n).astype(float)
    p = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)[y]
    return rng.choice(len(y), size=len(y), p=p / p.sum())
