"""Executors for shadow-model training: one pure task per shadow model (part of the MIA, docs/design.md § 6).

The task is :func:`train_shadow` (``ShadowSpec`` in, checkpoint directory out). It is
idempotent: a shadow whose directory holds ``DONE`` is not retrained, so an interrupted
audit resumes where it stopped. The shadow's generator is resolved by its **registry name**
(``cmraudit.registry.GENERATORS``), in this process or a worker. Executors only map the task
over specs — no home-made scheduler; they are registered in :data:`cmraudit.registry.EXECUTORS`
(third parties: entry-point group ``cmraudit.executors``):

- ``local`` (default): a process pool (spawn); with GPUs, one worker per GPU, each pinned to
  its GPU through ``CUDA_VISIBLE_DEVICES``; on CPU, ``max_workers`` workers sharing the cores.
- ``slurm``: submitit job array (``AutoExecutor(folder, cluster=...)``; options go to
  ``update_parameters``, e.g. ``slurm_partition``, ``gpus_per_node``, ``timeout_min``);
  ``cluster="local"`` runs the same array as local subprocesses (used by the tests).
- ``ray``: ``ray.remote`` tasks (``pip install cmraudit[ray]``), one GPU each when present.
- ``inline``: in this process, one after the other (debugging).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ...data.dataset import read_dataset
from ...errors import ConfigError, MissingExtraError
from ...registry import EXECUTORS, GENERATORS
from .attacks import get_attack
from .whitebox import loss_matrix


@dataclass(frozen=True)
class ShadowSpec:
    """Everything one shadow-model task needs (plain data: picklable, JSON-able)."""

    index: int
    generator: str  # registry name (cmraudit.registry.GENERATORS)
    params: dict
    data_path: str  # prepared dataset holding the shadow's training patients
    patients: tuple  # patient ids the shadow trains on
    seed: int
    out_dir: str  # checkpoint directory (written atomically)
    candidates_path: str  # prepared dataset of the slices to score
    timesteps: tuple
    score_seed: int
    fit_kwargs: dict = field(default_factory=dict)
    score_attack: str = "loss"  # LiRA statistic: "loss" or a registered attack (cmraudit.privacy.mia.attacks)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["patients"] = list(self.patients)
        d["timesteps"] = list(self.timesteps)
        return d


def generator_name(gen: Any) -> str:
    """The registry name a shadow task uses to rebuild ``gen``'s class in another process."""
    name = GENERATORS.name_of(type(gen))
    if name is None:
        raise ConfigError(
            f"shadow models need a registered generator: {type(gen).__module__}.{type(gen).__qualname__} is not "
            "in the entry-point group cmraudit.generators (`cmraudit generators list`); register it or pass "
            "ShadowConfig(generator=NAME)"
        )
    return name


def train_shadow(spec: ShadowSpec) -> str:
    """Fit one shadow generator on ``spec.patients``, save it, score the candidates; idempotent.

    Writes ``out_dir/{model/, losses.npy [N_candidates, T], spec.json, DONE}`` and returns
    ``out_dir``. A finished shadow (``DONE`` present) is returned without recomputation.
    """
    out = Path(spec.out_dir)
    if (out / "DONE").is_file():
        _attack_scores(spec, out)
        return str(out)
    gpu = os.environ.get("CMRAUDIT_WORKER_GPU")
    if gpu is not None:  # pragma: no cover - GPU machines only
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    cls = GENERATORS.get(spec.generator)
    data = read_dataset(spec.data_path).select_patients(spec.patients)
    gen = cls(**spec.params)
    gen.fit(data, seed=spec.seed, progress=False, **spec.fit_kwargs)
    cand = read_dataset(spec.candidates_path)
    losses = loss_matrix(gen, cand, timesteps=spec.timesteps, seed=spec.score_seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        gen.save(tmp / "model")
        np.save(tmp / "losses.npy", losses)
        (tmp / "spec.json").write_text(json.dumps(spec.to_dict(), indent=2, default=str))
        (tmp / "DONE").write_text("ok\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _attack_scores(spec, out)
    return str(out)


def _attack_scores(spec: ShadowSpec, out: Path) -> None:
    """``scores_<attack>.npy`` [N_candidates] of a finished shadow for a registered attack (written once, atomic)."""
    if spec.score_attack == "loss":
        return
    path = out / f"scores_{spec.score_attack}.npy"
    if path.is_file():
        return
    gen = GENERATORS.get(spec.generator).load(out / "model")
    scores = get_attack(spec.score_attack).score(gen, read_dataset(spec.candidates_path), spec.score_seed)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npy", dir=out)
    os.close(fd)
    try:
        np.save(tmp, np.asarray(scores, dtype=np.float64))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------- executors
class InlineExecutor:
    """In this process, one shadow after the other (debugging, tests)."""

    name = "inline"

    def map(self, fn: Callable, specs: Sequence) -> list:
        return [fn(s) for s in specs]


def _init_worker(gpu_queue, threads: int) -> None:
    if gpu_queue is not None:  # pragma: no cover - GPU machines only
        os.environ["CMRAUDIT_WORKER_GPU"] = str(gpu_queue.get())
    try:
        import torch

        torch.set_num_threads(max(1, threads))
    except ImportError:  # pragma: no cover
        pass


class LocalExecutor:
    """Process pool (spawn). One worker per GPU when GPUs exist, else ``max_workers`` (default 1)."""

    name = "local"

    def __init__(self, *, max_workers: int | None = None):
        self.max_workers = max_workers

    def map(self, fn: Callable, specs: Sequence) -> list:
        import multiprocessing as mp

        specs = list(specs)
        if not specs:
            return []
        try:
            import torch

            n_gpu = torch.cuda.device_count()
        except ImportError:  # pragma: no cover
            n_gpu = 0
        ctx = mp.get_context("spawn")
        if n_gpu:  # pragma: no cover - GPU machines only
            workers = min(n_gpu, self.max_workers or n_gpu)
            q = ctx.Manager().Queue()
            for g in range(workers):
                q.put(g)
        else:
            workers = self.max_workers or 1
            q = None
        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(
            max_workers=min(workers, len(specs)), mp_context=ctx, initializer=_init_worker, initargs=(q, threads)
        ) as ex:
            return list(ex.map(fn, specs))


class SlurmExecutor:
    """submitit job array; ``cluster=None`` lets submitit pick slurm, ``"local"`` runs locally."""

    name = "slurm"

    def __init__(self, *, folder: str | os.PathLike, cluster: str | None = None, **parameters):
        try:
            import submitit  # noqa: F401
        except ImportError as e:
            raise MissingExtraError("the slurm executor needs submitit: pip install cmraudit[slurm]") from e
        self.folder = str(folder)
        self.cluster = cluster
        self.parameters = parameters

    def map(self, fn: Callable, specs: Sequence) -> list:
        import submitit

        specs = list(specs)
        if not specs:
            return []
        ex = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        params = {"timeout_min": 24 * 60, **self.parameters}
        ex.update_parameters(**params)
        jobs = ex.map_array(fn, specs)
        return [j.result() for j in jobs]


class RayExecutor:
    """Ray tasks (one GPU each when the cluster has GPUs). Needs ``pip install cmraudit[ray]``."""

    name = "ray"

    def __init__(self, *, address: str | None = None, num_gpus: float | None = None, **init_kwargs):
        try:
            import ray  # noqa: F401
        except ImportError as e:
            raise MissingExtraError(
                "the ray executor needs Ray, which is not installed: pip install cmraudit[ray]"
            ) from e
        self.address = address
        self.num_gpus = num_gpus
        self.init_kwargs = init_kwargs

    def map(self, fn: Callable, specs: Sequence) -> list:
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, **self.init_kwargs)
        gpus = self.num_gpus
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        remote = ray.remote(num_gpus=gpus)(fn)
        return ray.get([remote.remote(s) for s in specs])


def get_executor(executor: Any = "local", **options):
    """An executor from a registered name (``inline``, ``local``, ``slurm``, ``ray``, …) or an object with ``map``."""
    if not isinstance(executor, str):
        if not hasattr(executor, "map"):
            raise ConfigError(f"executor {executor!r} has no map(fn, specs) method")
        return executor
    cls = EXECUTORS.get(executor)
    try:
        return cls(**options)
    except TypeError as e:
        raise ConfigError(f"executor {executor!r} rejected options {sorted(options)}: {e}") from e
