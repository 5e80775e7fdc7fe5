"""``geomp-ref nbody``: generate the charged N-body data and train models on it.

Subcommands::

    geomp-ref nbody generate --out DIR [--num-train N] [--num-valid N] [--num-test N] [--seed S]
        [--suffix SUFFIX] [--length L] [--length-test L] [--sample-freq F] [--n-balls B]
        [--initial-vel {0,1}] [--block N] [--quiet]
    geomp-ref nbody train --model {linear,gnn,rf,egnn,segnn,segnn-e3,tfn,tfn-se3,ponita} --data DIR
        [--suffix small] [--epochs E] [--lr LR] [--batch-size 100] [--max-samples 3000]
        [--seed S] [--out DIR] [--weight-decay W] [--eval-every K] [--float32]
        [--backend {numpy,numba}] [--parametrization {native,standard}] [--resume] [--quiet]

``generate`` has the published generator's defaults (seed 42, no suffix, 10 000 / 2 000 / 2 000
simulations of 5 000 steps, sample frequency 100, 5 balls, initial velocity on); the
"nbody_small" set is ``generate --out DIR --num-train 10000 --seed 43 --suffix small``.
``--sufix`` (the published spelling) is accepted too.

``train`` follows the published training script: Adam with weight decay 1e-12, batches of 100,
the first 3 000 training simulations, MSE on the positions 1 000 steps ahead, validation and test
every 5 epochs, test loss reported at the best validation epoch. Its default learning rate is the
published one of the model (egnn, linear, segnn, segnn-e3 5e-4; gnn, tfn, tfn-se3 1e-3; rf 2e-4)
and its default number of epochs the published 10 000. ``segnn`` is the published SEGNN
(:class:`geomp_ref.models.nbody_steerable.NBodySEGNN`), which centres each position on the mean of
its own three coordinates and so is neither rotation- nor translation-equivariant; ``segnn-e3``
is the same configuration centred on each system's centroid (``mode="corrected"``), which is
E(3)-equivariant. ``tfn`` is a TFN built from e3nn's convolution
(:class:`geomp_ref.models.nbody_steerable.NBodyTFN`), ``tfn-se3`` the published TFN baseline's
own architecture (:class:`geomp_ref.models.nbody_steerable.NBodySE3TFN`).

``ponita`` (:class:`geomp_ref.models.nbody_ponita.NBodyPONITA`) trains with PONITA's own recipe
(ebekkers/ponita ``main_nbody.py``), not the EGNN script's: learning rate 1e-3 under a cosine
schedule over ``--epochs`` with 10 warm-up epochs (:class:`geomp_ref.train.CosineWarmup`, one
value per epoch), weight decay 1e-10 on the weights of linear maps only (none on biases, layer
norms and layer scales), gradients clipped to norm 0.5 before every step
(:func:`geomp_ref.train.clip_grad_norm`), every training system rotated by its own uniformly
random rotation (positions, velocities and targets; drawn from the batch generator), the
convolutions calibrated once on the first training batch before the first step
(:meth:`~geomp_ref.models.nbody_ponita.NBodyPONITA.calibrate`), and validation after the 5th,
10th, ... epoch (PyTorch Lightning's ``check_val_every_n_epoch``). ``--weight-decay`` sets the
decay of those weights; the other steps of the recipe are recorded in ``results.json``.

``train --parametrization standard`` trains the effective weights of a model whose layers
store e3nn-style weights times a fan-in constant (``tfn``): the same initial network, but Adam
steps of ``--lr`` on the weights the forward pass multiplies by, as torch stores them
(:func:`geomp_ref.train.standard_parametrization`); the checkpoints then hold those weights.
Models that already store their effective weights refuse it.

``train --resume`` continues the run in ``--out`` from its ``last`` checkpoint (written at every
evaluation and at the end) up to ``--epochs`` epochs in all: the parameters, the Adam state, the
state of the generator that shuffles the batches, the best validation so far and the elapsed
time carry over, rows of ``metrics.csv`` after the checkpoint are dropped, and the continued run
is bit for bit the run that was never stopped. The model and the training options must be the
ones the run started with (the command names any that differ); ``--backend`` may change.

The models come from :mod:`geomp_ref.models.nbody`, which is expected to provide
``make_model(name) -> block`` and ``model_inputs(name, batch) -> tuple`` (the forward inputs after
the graph, built from a :class:`geomp_ref.nbody.dataset.Batch`); the block's forward returns the
predicted positions, shape (B * n, 3). Until that module provides a model, ``train`` exits with
status 2 and says so.

Exit status: 0 on success, 2 for invalid arguments or a missing model, 1 when a simulation
reaches a state the published generator refuses.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import os
import sys

__all__ = ["build_parser", "main"]

MODELS = ("linear", "gnn", "rf", "egnn", "segnn", "segnn-e3", "tfn", "tfn-se3", "ponita")
#: Learning rates of the published runs (EGNN repository main_nbody.py defaults and README
#: commands; SEGNN repository README; PONITA main_nbody.py).
DEFAULT_LR = {"linear": 5e-4, "gnn": 1e-3, "rf": 2e-4, "egnn": 5e-4, "segnn": 5e-4,
              "segnn-e3": 5e-4, "tfn": 1e-3, "tfn-se3": 1e-3, "ponita": 1e-3}
#: weight decay of the published scripts (EGNN's main_nbody.py 1e-12; PONITA 1e-10, linear
#: maps' weights only)
DEFAULT_WEIGHT_DECAY = {"ponita": 1e-10}
#: PONITA's training recipe (main_nbody.py, lightning_wrappers/nbody.py)
PONITA_RECIPE = {"schedule": {"name": "CosineWarmup", "warmup": 10}, "clip_grad_norm": 0.5,
                 "augment": "SO(3) per system", "calibrate": "first training batch",
                 "decay_on": "linear maps' weights", "eval_phase": "every 5th epoch (1-based)"}


class _ArgumentError(Exception):
    """Raised by the parser instead of exiting, so ``main`` can return a status."""


class _UsageError(Exception):
    """An argument that the parser accepted but the data or the library refuses."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _ArgumentError(f"{self.prog}: error: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The ``nbody`` argument parser (subcommands ``generate`` and ``train``)."""
    parser = _Parser(prog="geomp-ref nbody", description="Charged N-body benchmark (EGNN paper).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    gen = sub.add_parser("generate", help="write the dataset files, bit-identical to the "
                                          "published generator")
    gen.add_argument("--out", required=True, help="output folder (created if missing)")
    gen.add_argument("--num-train", type=int, default=10000)
    gen.add_argument("--num-valid", type=int, default=2000)
    gen.add_argument("--num-test", type=int, default=2000)
    gen.add_argument("--length", type=int, default=5000, help="steps of train/valid trajectories")
    gen.add_argument("--length-test", "--length_test", type=int, default=5000,
                     help="steps of test trajectories (not changed by --length, as published)")
    gen.add_argument("--sample-freq", type=int, default=100)
    gen.add_argument("--n-balls", "--n_balls", type=int, default=5)
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--initial-vel", "--initial_vel", type=int, choices=(0, 1), default=1)
    gen.add_argument("--suffix", "--sufix", default="", help="appended to the file names")
    gen.add_argument("--block", type=int, default=None,
                     help="simulations integrated together (speed only; same bits)")
    gen.add_argument("--quiet", action="store_true", help="no progress line")

    tr = sub.add_parser("train", help="train a model with hand-derived gradients")
    tr.add_argument("--model", required=True, choices=MODELS)
    tr.add_argument("--data", required=True, help="folder written by 'nbody generate'")
    tr.add_argument("--suffix", default="small")
    tr.add_argument("--epochs", type=int, default=10000)
    tr.add_argument("--lr", type=float, default=None, help="default: the model's published rate")
    tr.add_argument("--weight-decay", type=float, default=None,
                    help="default: the published value (1e-12; ponita 1e-10 on weights only)")
    tr.add_argument("--batch-size", type=int, default=100)
    tr.add_argument("--max-samples", type=int, default=3000)
    tr.add_argument("--eval-every", type=int, default=5)
    tr.add_argument("--seed", type=int, default=1)
    tr.add_argument("--out", default=None, help="run folder (default runs/nbody_<model>)")
    tr.add_argument("--float32", action="store_true",
                    help="round the data to float32 as the published loader does")
    tr.add_argument("--backend", choices=("numpy", "numba"), default="numpy",
                    help="kernels of the model (numba: fused CPU kernels, same results to "
                         "<= 1e-13; the linear model has none and ignores it)")
    tr.add_argument("--parametrization", choices=("native", "standard"), default="native",
                    help="native: the model's own stored weights; standard: train the effective "
                         "weights, as torch stores them (models with e3nn-style fan-in "
                         "normalisation: tfn)")
    tr.add_argument("--resume", action="store_true",
                    help="continue the run in --out from its last checkpoint up to --epochs "
                         "epochs in all (same model and options)")
    tr.add_argument("--quiet", action="store_true", help="no progress line")
    return parser


def _generate(args) -> int:
    from ..train.progress import Progress
    from .generate import DEFAULT_BLOCK, GeneratorConfig, write_dataset

    try:
        config = GeneratorConfig(
            num_train=args.num_train, num_valid=args.num_valid, num_test=args.num_test,
            length=args.length, length_test=args.length_test, sample_freq=args.sample_freq,
            n_balls=args.n_balls, seed=args.seed, initial_vel=bool(args.initial_vel),
            suffix=args.suffix)
        block = DEFAULT_BLOCK if args.block is None else args.block
        if block < 1:
            raise ValueError(f"--block must be >= 1; got {block}")
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise ValueError(f"--out {args.out!r} exists and is not a folder")
    except (TypeError, ValueError) as exc:
        raise _UsageError(str(exc)) from exc
    total = config.num_train + config.num_valid + config.num_test
    bar = Progress(total, "nbody generate", "sims", enabled=not args.quiet)
    paths = write_dataset(args.out, config, block=block, progress=bar)
    seconds = bar.close()
    print(f"wrote {len(paths)} files to {args.out} in {seconds:.1f} s")
    return 0


def _resolve_model(name: str, backend: str = "numpy"):
    """``(block, inputs_fn)`` from geomp_ref.models.nbody, or an error message."""
    try:
        module = importlib.import_module("geomp_ref.models.nbody")
    except ImportError as exc:
        return None, (f"model {name!r} is not available: geomp_ref.models.nbody cannot be "
                      f"imported ({exc}); the N-body models are not in this build yet")
    make_model = getattr(module, "make_model", None)
    model_inputs = getattr(module, "model_inputs", None)
    if make_model is None or model_inputs is None:
        return None, (f"model {name!r} is not available: geomp_ref.models.nbody does not provide "
                      "make_model(name) and model_inputs(name, batch) yet")
    known = getattr(module, "MODELS", None)
    if known is not None and name not in known:
        return None, (f"model {name!r} is not available yet in geomp_ref.models.nbody "
                      f"(it provides: {', '.join(sorted(known)) or 'none'})")
    try:
        block = make_model(name)
        if backend != "numpy" and "backend" in getattr(block, "__dataclass_fields__", {}):
            block = make_model(name, backend=backend)
    except (KeyError, NotImplementedError, ValueError) as exc:
        return None, f"model {name!r} is not available yet in geomp_ref.models.nbody: {exc}"
    return (block, lambda batch: tuple(model_inputs(name, batch))), None


def _train(args) -> int:
    import numpy as np

    from ..train import Adam, fit, mse_loss
    from .dataset import NBodyDataset

    resolved, problem = _resolve_model(args.model, args.backend)
    if problem is not None:
        print(f"geomp-ref nbody train: {problem}", file=sys.stderr)
        return 2
    block, inputs_of = resolved
    if args.parametrization == "standard":
        from ..train import standard_parametrization

        try:
            block = standard_parametrization(block)
        except TypeError:
            raise _UsageError(f"--parametrization standard: model {args.model!r} already stores "
                              "the weights its forward multiplies by (no fan-in normalisation "
                              "to undo); use it with tfn, or drop the option") from None
    lr = DEFAULT_LR[args.model] if args.lr is None else args.lr
    if args.weight_decay is None:
        args.weight_decay = DEFAULT_WEIGHT_DECAY.get(args.model, 1e-12)
    ponita = args.model == "ponita"
    try:
        if ponita:  # decay on the weights of linear maps ("W..."), not on the others
            decay = _weights_decay(block.param_shapes(), float(args.weight_decay))
            optimizer = Adam(lr, weight_decay=decay)
        else:
            optimizer = Adam(lr, weight_decay=args.weight_decay)
        for name in ("epochs", "batch_size", "max_samples", "eval_every"):
            if getattr(args, name) < (0 if name == "epochs" else 1):
                raise ValueError(f"--{name.replace('_', '-')} must be >= "
                                 f"{0 if name == 'epochs' else 1}; got {getattr(args, name)}")
        load = {"suffix": args.suffix, "float32": args.float32}
        train_set = NBodyDataset(args.data, "train", max_samples=args.max_samples, **load)
        val_set = NBodyDataset(args.data, "val", **load)
        test_set = NBodyDataset(args.data, "test", **load)
    except (TypeError, ValueError, FileNotFoundError) as exc:
        raise _UsageError(str(exc)) from exc
    if len(train_set) < args.batch_size:
        raise _UsageError(f"--batch-size {args.batch_size} is larger than the {len(train_set)} "
                          "training simulations: every epoch would be empty (the last "
                          "incomplete batch is dropped, as published)")
    hyper = {"model": args.model, "lr": lr, "weight_decay": args.weight_decay,
             "batch_size": args.batch_size, "max_samples": args.max_samples, "seed": args.seed,
             "suffix": args.suffix, "float32": args.float32, "backend": args.backend,
             "data": os.path.abspath(args.data), "eval_every": args.eval_every,
             "parametrization": args.parametrization}
    if ponita:
        hyper["recipe"] = PONITA_RECIPE
    out = args.out or os.path.join("runs", f"nbody_{args.model}")
    rng = np.random.default_rng(args.seed)
    params = block.init(rng)
    resume = {}
    if args.resume:
        resume = _resume_state(out, hyper, rng, len(train_set))
        params = resume.pop("params")
        if resume["start_epoch"] >= args.epochs:
            print(f"{args.model}: the run in {out} has already trained "
                  f"{resume['start_epoch']} epochs (--epochs {args.epochs}); nothing to do")
            return 0

    def loss_and_grad(p, batch):
        pred, cache = block.forward(p, batch.graph, *inputs_of(batch))
        loss, grad = mse_loss(pred, batch.target)
        grads, _ = block.backward(p, cache, grad)
        return loss, grads

    extra = {}
    if ponita:
        from ..train import CosineWarmup, clip_grad_norm

        def train_batches(epoch):
            return _rotated_batches(train_set, args.batch_size, rng)

        def clipped(p, batch):
            loss, grads = loss_and_grad(p, batch)
            return loss, clip_grad_norm(grads, PONITA_RECIPE["clip_grad_norm"])[0]

        schedule = CosineWarmup(PONITA_RECIPE["schedule"]["warmup"], args.epochs)
        extra = {"lr_schedule": lambda epoch: schedule.lr(lr, epoch),
                 "eval_phase": args.eval_every - 1}
        if not args.resume:
            # calibrate on the batch the first step will see (a copy of the generator's state)
            peek = copy.deepcopy(rng)
            first = next(_rotated_batches(train_set, args.batch_size, peek))
            params = block.calibrate(params, first.graph, *inputs_of(first))
            del first, peek
        step_fn = clipped
    else:
        def train_batches(epoch):
            return train_set.batches(args.batch_size, rng)

        step_fn = loss_and_grad

    def mean_loss(p, dataset):
        # as published: batch losses weighted by the batch's number of simulations
        total = count = 0.0
        for batch in dataset.batches(args.batch_size):
            pred, _ = block.forward(p, batch.graph, *inputs_of(batch))
            total += mse_loss(pred, batch.target)[0] * batch.index.size
            count += batch.index.size
        return total / count

    start_epoch = resume.pop("start_epoch", 0)
    result = fit(params, optimizer, step_fn, train_batches,
                 epochs=args.epochs - start_epoch, start_epoch=start_epoch,
                 evaluate=lambda p: {"val": mean_loss(p, val_set),
                                     "test": mean_loss(p, test_set)},
                 eval_every=args.eval_every, out_dir=out, hyper=hyper, loss_name="mse",
                 checkpoint_extra=lambda: {"batch_rng": rng.bit_generator.state},
                 progress=not args.quiet, label=f"nbody {args.model}", **extra, **resume)
    best = result.best
    print(f"{args.model}: best val MSE {best.get('val', float('nan')):.6g} at epoch "
          f"{result.best_epoch}, test MSE there {best.get('test', float('nan')):.6g}; "
          f"{result.wall_time:.1f} s; files in {out}")
    return 0


def _weights_decay(shapes, value: float):
    """Weight decay per leaf of a params tree: ``value`` on weights (leaves named ``W...``), 0
    on biases, normalisation parameters and layer scales (PONITA's parameter groups)."""
    return {k: _weights_decay(v, value) if isinstance(v, dict) else
            (value if k.startswith("W") else 0.0) for k, v in shapes.items()}


def _rotated_batches(train_set, batch_size: int, rng):
    """One epoch of training batches, each system rotated by its own Haar-random rotation
    (positions, velocities and targets), drawn from ``rng`` after its batch (PONITA's
    ``RandomRotate`` in training)."""
    import numpy as np

    from ..o3.rotation import random_rotation

    for batch in train_set.batches(batch_size, rng):
        R = random_rotation(rng, batch.index.size)[batch.graph.batch]  # (N, 3, 3)
        yield batch._replace(**{k: np.einsum("nij,nj->ni", R, getattr(batch, k))
                                for k in ("x", "v", "target")})


#: options that must be the same when a run is resumed (``backend`` may change: the kernels
#: agree to <= 1e-13; ``data`` only warns: a folder may move)
_RESUME_SAME = ("model", "lr", "weight_decay", "batch_size", "max_samples", "seed", "suffix",
                "float32", "eval_every", "parametrization")
#: values of options that runs started before the option existed used
_RESUME_DEFAULTS = {"parametrization": "native"}


def _resume_state(out: str, hyper: dict, rng, num_train: int) -> dict:
    """``fit`` keywords that continue the run in ``out``; sets ``rng`` to the checkpoint's state."""
    import csv

    from ..train import load_checkpoint

    last = os.path.join(out, "last")
    if not os.path.exists(last + ".json"):
        raise _UsageError(f"--resume: {last}.json not found; --out must be the folder of a run "
                          "this command started (or drop --resume to start a new run)")
    try:
        ckpt = load_checkpoint(last)
    except (OSError, ValueError, KeyError) as exc:
        raise _UsageError(f"--resume: cannot read the checkpoint {last}: {exc}") from exc
    before = {**_RESUME_DEFAULTS, **ckpt.meta.get("hyper", {})}
    differ = [f"--{k.replace('_', '-')} {before[k]!r} (now {hyper[k]!r})" for k in _RESUME_SAME
              if k in before and before[k] != hyper[k]]
    if differ:
        raise _UsageError("--resume: the run in " + out + " was started with "
                          + ", ".join(differ) + "; resume it with the same options")
    if before.get("data") not in (None, hyper["data"]):
        print(f"geomp-ref nbody train: note: the run was started on {before['data']}; "
              f"continuing on {hyper['data']}", file=sys.stderr)
    if ckpt.opt_state is None or ckpt.meta.get("epoch") is None:
        raise _UsageError(f"--resume: {last} has no optimizer state or epoch to continue from")
    epoch = int(ckpt.meta["epoch"])
    if ckpt.meta.get("batch_rng") is not None:
        rng.bit_generator.state = ckpt.meta["batch_rng"]
    else:  # a checkpoint written before the state was stored: replay the draws
        # (the model's init drew from rng already; each epoch draws one permutation)
        for _ in range(epoch + 1):
            rng.permutation(num_train)
    best = None
    best_path = os.path.join(out, "best")
    if os.path.exists(best_path + ".json"):
        b = load_checkpoint(best_path)
        if b.meta.get("epoch") is not None and int(b.meta["epoch"]) <= epoch and b.meta["metrics"]:
            best = (int(b.meta["epoch"]), b.meta["metrics"], b.params)
    csv_path = os.path.join(out, "metrics.csv")
    elapsed = ckpt.meta.get("elapsed")
    if os.path.exists(csv_path):  # drop rows of epochs after the checkpoint (a stopped run)
        with open(csv_path, newline="") as fh:
            reader = csv.DictReader(fh)
            columns, rows = reader.fieldnames, [r for r in reader if int(r["epoch"]) <= epoch]
        if columns:
            with open(csv_path + ".tmp", "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)
            os.replace(csv_path + ".tmp", csv_path)
        if elapsed is None and rows:
            elapsed = float(rows[-1]["elapsed"])
    return {"params": ckpt.params, "opt_state": ckpt.opt_state, "start_epoch": epoch + 1,
            "best": best, "elapsed": float(elapsed or 0.0)}


def main(argv=None) -> int:
    """Run ``geomp-ref nbody``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _ArgumentError as exc:
        print(exc, file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    from .simulate import SimulationError

    try:
        if args.command == "generate":
            return _generate(args)
        return _train(args)
    except _UsageError as exc:
        print(f"geomp-ref nbody {args.command}: {exc}", file=sys.stderr)
        return 2
    except SimulationError as exc:
        print(f"geomp-ref nbody {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
