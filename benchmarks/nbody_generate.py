"""Charged N-body data generation: ours (vectorised) against the published generator.

Both run as separate processes with the same interpreter and arguments, each in its own empty
folder; the table shows wall-clock and CPU seconds, the ratio, and whether the twelve files are
byte-for-byte identical. The published generator is run from the folder given by ``--published``
(the EGNN repository's ``n_body_system/dataset``, holding ``generate_dataset.py`` and
``synthetic_sim.py``); nothing of it is imported into this process. Its ``synthetic_sim.py``
imports matplotlib at the top without using it for generation; when matplotlib is missing, an
empty stand-in package is put on its ``PYTHONPATH``.

Usage::

    python3 benchmarks/nbody_generate.py --published /path/to/egnn/n_body_system/dataset
    python3 benchmarks/nbody_generate.py --published DIR --num-train 200 --num-valid 50 \\
        --num-test 50 --seed 43 --suffix small        # default size: 100 / 20 / 20

Both processes use one BLAS thread (``OPENBLAS_NUM_THREADS=1`` and friends), so the ratio
compares the algorithms, not the thread counts.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import cpu_name  # noqa: E402  (benchmarks/ is the script folder)

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = cpu_name()
    return (f"# {cpu}, {os.cpu_count()} logical CPUs; {platform.platform()}; Python "
            f"{platform.python_version()}, NumPy {np.__version__}")


def _run(cmd, cwd, env) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--published", required=True,
                    help="folder with the published generate_dataset.py and synthetic_sim.py")
    ap.add_argument("--num-train", type=int, default=100)
    ap.add_argument("--num-valid", type=int, default=20)
    ap.add_argument("--num-test", type=int, default=20)
    ap.add_argument("--length", type=int, default=5000)
    ap.add_argument("--sample-freq", type=int, default=100)
    ap.add_argument("--n-balls", type=int, default=5)
    ap.add_argument("--seed", type=int, default=43)
    ap.add_argument("--suffix", default="small")
    ap.add_argument("--keep", default=None, help="keep both outputs under this folder")
    args = ap.parse_args(argv)

    script = Path(args.published).resolve() / "generate_dataset.py"
    if not script.is_file():
        ap.error(f"{script} not found")
    common = ["--num-train", args.num_train, "--num-valid", args.num_valid, "--num-test",
              args.num_test, "--length", args.length, "--sample-freq", args.sample_freq,
              "--seed", args.seed]
    common = [str(c) for c in common]
    # the published script's test length is its own option (default 5000): pass --length to both
    published = [sys.executable, str(script), *common, "--length_test", str(args.length),
                 "--n_balls", str(args.n_balls), "--sufix", args.suffix]
    ours = [sys.executable, "-m", "geomp_ref.nbody", "generate", "--out", ".", *common,
            "--length-test", str(args.length), "--n-balls", str(args.n_balls), "--suffix",
            args.suffix, "--quiet"]

    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="nbody_bench_"))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    paths = [str(ROOT)]
    if importlib.util.find_spec("matplotlib") is None:
        stub = base / "stub" / "matplotlib"
        stub.mkdir(parents=True, exist_ok=True)
        (stub / "__init__.py").write_text("")
        (stub / "pyplot.py").write_text("")
        paths.append(str(base / "stub"))
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)

    times = {}
    for name, cmd in (("ours", ours), ("published", published)):
        folder = base / name
        folder.mkdir(parents=True, exist_ok=True)
        times[name] = _run(cmd, folder, env)
        print(f"# {name}: {times[name][0]:.1f} s", file=sys.stderr, flush=True)

    files = sorted(p.name for p in (base / "published").glob("*.npy"))
    same = sum((base / "ours" / f).is_file()
               and (base / "ours" / f).read_bytes() == (base / "published" / f).read_bytes()
               for f in files)
    sims = args.num_train + args.num_valid + args.num_test
    print(machine())
    print(f"# {sims} simulations ({args.num_train}/{args.num_valid}/{args.num_test}) of "
          f"{args.length} steps, {args.n_balls} balls, seed {args.seed}, suffix {args.suffix!r}")
    print(f"{'generator':<10} {'wall s':>9} {'cpu s':>9} {'ms/sim (cpu)':>13} "
          f"{'speed-up (cpu)':>15}")
    pub_cpu = times["published"][1]
    for name in ("published", "ours"):
        wall, cpu = times[name]
        print(f"{name:<10} {wall:9.1f} {cpu:9.1f} {1e3 * cpu / sims:13.2f} {pub_cpu / cpu:15.1f}")
    print(f"identical files: {same}/{len(files)}"
          + ("" if same == len(files) == 12 else "  <-- NOT bit-identical"))
    if not args.keep:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    return 0 if same == len(files) == 12 else 1


if __name__ == "__main__":
    raise SystemExit(main())
