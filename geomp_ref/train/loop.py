"""A small, generic training loop: epochs, periodic evaluation, best-validation tracking, files.

:func:`fit` follows the published N-body training script: after each epoch's updates, every
``eval_every`` epochs (epochs counted from 0, so the first evaluation follows epoch 0) it
evaluates, and a validation loss strictly below the best so far makes that epoch the best one;
the reported test loss is the one measured at the best validation epoch. The epoch's training
loss is the mean of the batch losses (weighted by ``batch_weight`` when given), measured while
the parameters change, as published.

Files written into ``out_dir`` (when given):

* ``metrics.csv``: one row per epoch: epoch, ``train_<loss>``, one ``<name>_<loss>`` column per
  evaluated metric (empty between evaluations), the epoch's seconds and the elapsed seconds;
* ``results.json``: best epoch, best validation loss, the other metrics at that epoch, epochs
  trained in all (``start_epoch`` + this call's), wall time in all, hyper-parameters;
* ``best.npz``/``best.json`` (at every new best) and ``last.npz``/``last.json`` (after every
  evaluation and at the end): checkpoints of :mod:`geomp_ref.train.checkpoint`, with the elapsed
  seconds and whatever ``checkpoint_extra()`` returns in the JSON;
* ``curve.png`` when matplotlib is installed.

A run continues where a ``last`` checkpoint left it when the next call gets that checkpoint's
parameters and optimizer state, ``start_epoch`` = its epoch + 1, its elapsed seconds, the best
evaluation so far (``best=``) and batches drawn from the same generator state (the training
command stores that state through ``checkpoint_extra``): the continued run is then bit for bit
the run that was never interrupted.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass, field

from .._validate import check_int
from .checkpoint import save_checkpoint, to_json
from .progress import Progress

__all__ = ["FitResult", "fit", "plot_curves"]


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    params, opt_state
        After the last epoch.
    best_params : dict or None
        At the best validation epoch (None if nothing was evaluated).
    best_epoch : int or None
    best : dict
        The evaluated metrics at the best epoch (``{"val": ..., "test": ...}``).
    history : list of dict
        One dict per epoch (the rows of ``metrics.csv``).
    wall_time : float
        Seconds of this call.
    """

    params: dict
    opt_state: object
    best_params: dict | None
    best_epoch: int | None
    best: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    wall_time: float = 0.0


class _CsvLog:
    """``metrics.csv`` written row by row; its columns are fixed by the first evaluated row, or
    by the header of the file that is appended to."""

    def __init__(self, path: str, wait_for_eval: bool, append: bool = False):
        self.path = path
        self.append = append and os.path.exists(path)
        self.wait = wait_for_eval
        self.pending: list = []
        self.fh = None
        self.writer = None
        if self.append:
            with open(path, newline="") as fh:
                header = next(csv.reader(fh), None)
            if header:
                self._open(header)
            else:  # an empty file: start it again
                self.append = False

    def add(self, row: dict, evaluated: bool) -> None:
        if self.writer is not None:
            self.writer.writerow(row)
            self.fh.flush()
            return
        self.pending.append(row)
        if evaluated or not self.wait:
            self._open(list(row))

    def _open(self, columns: list) -> None:
        # kept open across epochs (closed in close()), so no context manager here
        self.fh = open(self.path, "a" if self.append else "w", newline="")  # noqa: SIM115
        self.writer = csv.DictWriter(self.fh, fieldnames=columns, restval="")
        if not self.append:
            self.writer.writeheader()
        self.writer.writerows(self.pending)
        self.pending = []
        self.fh.flush()

    def close(self) -> None:
        if self.writer is None and self.pending:  # never evaluated: the columns we have
            self._open(list(self.pending[0]))
        if self.fh is not None:
            self.fh.close()


def plot_curves(history: list, path, loss_name: str = "loss") -> bool:
    """Learning curves (log scale) to ``path``; returns False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    keys = [k for k in history[0] if k.endswith(f"_{loss_name}")] if history else []
    for key in keys:
        pts = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), label=key)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(loss_name)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=120)
    plt.close(fig)
    return True


def fit(params, optimizer, loss_and_grad, train_batches, *, epochs: int, evaluate=None,
        eval_every: int = 5, select: str = "val", out_dir=None, hyper: dict | None = None,
        opt_state=None, start_epoch: int = 0, best=None, elapsed: float = 0.0,
        checkpoint_extra=None, batch_weight=None, loss_name: str = "loss",
        progress: bool = True, label: str = "train", eval_phase: int = 0,
        lr_schedule=None) -> FitResult:
    """Train ``params`` for ``epochs`` epochs.

    Parameters
    ----------
    params : dict
        Initial parameter tree.
    optimizer
        Has ``init(params) -> state`` and ``step(params, grads, state) -> (params, state)``
        (e.g. :class:`geomp_ref.train.Adam`); ``optimizer.hyper()`` is recorded when present.
    loss_and_grad : callable
        ``loss_and_grad(params, batch) -> (loss, grads)``.
    train_batches : callable
        ``train_batches(epoch)`` returns the epoch's iterable of batches (shuffle inside it, from
        an explicit generator, for reproducible runs).
    epochs : int
        Epochs to run, numbered ``start_epoch .. start_epoch + epochs - 1``.
    evaluate : callable, optional
        ``evaluate(params) -> {name: loss}``, e.g. ``{"val": ..., "test": ...}``.
    eval_every : int
        Evaluate after epochs whose number is a multiple of this (plus ``eval_phase``).
    eval_phase : int
        Evaluate after the epochs ``e`` with ``e % eval_every == eval_phase`` (default 0, the
        published EGNN script; ``eval_every - 1`` is PyTorch Lightning's
        ``check_val_every_n_epoch``, which validates after the 5th, 10th, ... epoch).
    select : str
        Metric of ``evaluate`` that selects the best epoch (lower is better).
    out_dir : path, optional
        Where to write the files listed in the module docstring.
    hyper : dict, optional
        Recorded in ``results.json`` and the checkpoints.
    opt_state : optional
        Resume from this optimizer state (default ``optimizer.init(params)``).
    start_epoch : int
        When > 0 (a resumed run), rows are appended to an existing ``metrics.csv``.
    best : (int, dict, dict), optional
        ``(epoch, metrics, params)`` of the best evaluation of the earlier calls of a resumed
        run: a new best must be strictly below ``metrics[select]``, and when none is, the result
        and ``results.json`` report this one. Default: the best is tracked within this call.
    elapsed : float
        Seconds spent by the earlier calls; added to the ``elapsed`` column, to the
        checkpoints' and to ``results.json``'s wall time.
    checkpoint_extra : callable, optional
        ``checkpoint_extra() -> dict`` of JSON-serialisable values stored in every checkpoint
        (e.g. the state of the generator that shuffles the batches).
    batch_weight : callable, optional
        ``batch_weight(batch)`` weights the epoch's mean training loss (default 1 each).
    loss_name : str
        Column suffix, e.g. ``"mse"``.
    progress : bool
        Show a progress line on stderr.
    label : str
        Progress label.
    lr_schedule : callable, optional
        ``lr_schedule(epoch) -> lr``: the learning rate of every step of that epoch, passed as
        ``optimizer.step(..., lr=...)`` (e.g. ``lambda e: CosineWarmup(10, E).lr(1e-3, e)``);
        recorded in the ``lr`` column of ``metrics.csv``.
    """
    epochs = check_int(epochs, "epochs", minimum=0)
    eval_every = check_int(eval_every, "eval_every", minimum=1)
    eval_phase = check_int(eval_phase, "eval_phase", maximum=eval_every - 1)
    start_epoch = check_int(start_epoch, "start_epoch")
    elapsed = float(elapsed)
    if not (math.isfinite(elapsed) and elapsed >= 0):
        raise ValueError(f"elapsed must be a finite number of seconds >= 0; got {elapsed}")
    state = optimizer.init(params) if opt_state is None else opt_state
    hyper = dict(hyper or {})
    if hasattr(optimizer, "hyper"):
        hyper.setdefault("optimizer", optimizer.hyper())
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        os.makedirs(out_dir, exist_ok=True)
    result = FitResult(params, state, None, None)
    best_value = math.inf
    if best is not None:
        try:
            best_epoch, best_metrics, best_params = best
            best_value = float(best_metrics[select])
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"best must be (epoch, metrics, params) with metrics[{select!r}] a "
                             f"number; got {best!r:.200}") from exc
        result.best_epoch, result.best = int(best_epoch), dict(best_metrics)
        result.best_params = best_params

    def extra():
        return {} if checkpoint_extra is None else dict(checkpoint_extra())

    bar = Progress(epochs, label, "epochs", enabled=progress)
    start = time.perf_counter()
    log = None if out_dir is None else _CsvLog(os.path.join(out_dir, "metrics.csv"),
                                               wait_for_eval=evaluate is not None,
                                               append=start_epoch > 0)
    try:
        for epoch in range(start_epoch, start_epoch + epochs):
            t0 = time.perf_counter()
            total = weight_sum = 0.0
            lr = None if lr_schedule is None else float(lr_schedule(epoch))
            step_kw = {} if lr is None else {"lr": lr}  # optimizers without a schedule: no lr=
            for batch in train_batches(epoch):
                loss, grads = loss_and_grad(params, batch)
                params, state = optimizer.step(params, grads, state, **step_kw)
                w = 1.0 if batch_weight is None else float(batch_weight(batch))
                total += float(loss) * w
                weight_sum += w
            row = {"epoch": epoch,
                   f"train_{loss_name}": total / weight_sum if weight_sum else math.nan}
            if lr is not None:
                row["lr"] = lr
            metrics = None
            if evaluate is not None and epoch % eval_every == eval_phase:
                metrics = {k: float(v) for k, v in evaluate(params).items()}
                if select not in metrics:
                    raise KeyError(f"evaluate() returned {sorted(metrics)}; select={select!r} "
                                   "must be one of them")
                row.update({f"{k}_{loss_name}": v for k, v in metrics.items()})
            now = time.perf_counter()
            row["seconds"] = now - t0
            row["elapsed"] = elapsed + now - start
            result.history.append(row)
            if metrics is not None:
                if metrics[select] < best_value:
                    best_value = metrics[select]
                    result.best_epoch, result.best, result.best_params = epoch, metrics, params
                    if out_dir is not None:
                        save_checkpoint(os.path.join(out_dir, "best"), params, state, epoch=epoch,
                                        hyper=hyper, metrics=metrics, elapsed=row["elapsed"],
                                        **extra())
                if out_dir is not None:
                    save_checkpoint(os.path.join(out_dir, "last"), params, state, epoch=epoch,
                                    hyper=hyper, metrics=metrics, elapsed=row["elapsed"],
                                    **extra())
            if log is not None:
                log.add(row, metrics is not None)
            note = f"{loss_name} {row[f'train_{loss_name}']:.4g}"
            if result.best_epoch is not None:
                note += f" best {select} {best_value:.4g}@{result.best_epoch}"
            bar.update(1, note)
    finally:
        if log is not None:
            log.close()
    result.params, result.opt_state = params, state
    result.wall_time = bar.close()
    if out_dir is not None:
        last_epoch = start_epoch + epochs - 1
        total_time = elapsed + result.wall_time
        save_checkpoint(os.path.join(out_dir, "last"), params, state, epoch=last_epoch,
                        hyper=hyper, metrics=result.history[-1] if result.history else {},
                        elapsed=total_time, **extra())
        summary = {"best_epoch": result.best_epoch, f"best_{select}_{loss_name}": best_value,
                   **{f"{k}_{loss_name}_at_best": v for k, v in result.best.items() if k != select},
                   "epochs": start_epoch + epochs, "start_epoch": start_epoch,
                   "wall_time_s": total_time,
                   "final_train": result.history[-1][f"train_{loss_name}"] if result.history
                   else None, "eval_every": eval_every, "hyper": hyper}
        with open(os.path.join(out_dir, "results.json"), "w") as fh:
            json.dump(to_json(summary), fh, indent=2, sort_keys=True)
            fh.write("\n")
        plot_curves(result.history, os.path.join(out_dir, "curve.png"), loss_name)
    return result
