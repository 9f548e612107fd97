"""``train_target``: train the target from ``target.yaml``, in one process or several (DDP), with checkpoints.

Under ``torchrun --nproc-per-node N`` (``WORLD_SIZE`` set) every process builds the same model from
the file (same seed), wraps it in ``DistributedDataParallel`` (``gloo`` on CPU, ``nccl`` on GPUs)
and trains on its ``1/N`` of every global batch; DDP averages the gradients, so with equal shards
the update is that of the whole batch in one process. The loss each process reports is the
all-reduced mean over the global batch, so the divergence guard decides alike everywhere.

A checkpoint holds the plain model and optimizer state dicts, the step, the schedule's length and
the target's identity (a hash of its run spec: width, values, optimizer, task, seed); tensors,
numbers and strings only, so it loads with ``torch.load(weights_only=True)``; the μP scaling is
rebuilt from ``target.yaml``, not pickled. Resuming continues the same schedule, batches and LRs,
and is refused (one line, exit 2) for another target's checkpoint, a corrupt or foreign file, or a
step past the schedule. ``--checkpoint`` is checked writable before training; if writing fails at
the end anyway, the state goes to a file in the system's temporary folder, named in the error.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from .._io import write_text_atomic
from ..errors import TrainingError
from ..training import train
from ..training._build import make_optimizer, make_task
from ..training._loop import DivergenceGuard
from ._transfer import load

__all__ = ["train_target", "ShardedTask", "CHECKPOINT_VERSION"]

#: Version of the checkpoint layout (``hptransfer_checkpoint`` key); 2 added the target's identity.
CHECKPOINT_VERSION = 2


class ShardedTask:
    """A built-in task whose training batches are this process's shard of the global batch.

    Rows ``rank::world`` of each batch; the loss value is the global mean (all-reduced, detached)
    while its gradient is that of the local mean, which DDP then averages. Validation is not sharded.
    """

    def __init__(self, task: Any, rank: int, world: int):
        self.task, self.rank, self.world = task, rank, world

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)

    def batch(self, step: int, batch_size: int, *, split: str = "train", seed: int = 0) -> tuple[Any, Any]:
        x, y = self.task.batch(step, batch_size, split=split, seed=seed)
        return x[self.rank::self.world], y[self.rank::self.world]

    def loss(self, output: Any, target: torch.Tensor) -> torch.Tensor:
        local = self.task.loss(output, target)
        total = local.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return local + (total / self.world - local).detach()

    def eval_loss(self, model: Any, **kwargs: Any) -> float:
        return self.task.eval_loss(model, **kwargs)


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls) -> _Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return cls(dist.get_rank() if world > 1 else 0, world)


def train_target(path: str | Path, *, out: str | Path | None = None, steps: int | None = None,
                 stop: int | None = None, checkpoint: str | Path | None = None,
                 resume: str | Path | None = None, fsdp: bool = False) -> dict[str, Any]:
    """Train the run in ``target.yaml`` once; return (and on rank 0 write ``out/train_result.json``) its result.

    Args:
        path: the target file (from ``hptransfer transfer`` / ``run``).
        out: folder for ``train_result.json``. Default: the target file's folder.
        steps: schedule length (default the spec's ``train.steps``); ``stop``: end after this step
            (default ``steps``), e.g. to checkpoint part way.
        checkpoint: write model, optimizer and step here at the end (rank 0).
        resume: continue from this checkpoint (loaded with ``weights_only=True``).
        fsdp: shard parameters, gradients and optimizer state with FSDP2 (``fully_shard`` on every
            module that owns parameters, then the root) instead of replicating them with DDP.

    Raises:
        TrainingError: the global batch does not split evenly over the processes, or the checkpoint
            belongs to another run.
    """
    d = _Dist.from_env()
    try:
        loaded = load(path)
        spec = loaded.spec
        if loaded.optimizer is None or spec.optimizer is None or not (steps or spec.train.steps) \
                or not spec.train.batch_size:
            raise TrainingError(f"{path} leaves the optimizer, steps or batch size to the study's own train_fn, so "
                                "`hptransfer train` cannot train it. Fix: train the target with your train_fn and "
                                "the values in the file (hptransfer.load(...).values).")
        total, batch = int(steps or spec.train.steps or 0), int(spec.train.batch_size)
        if batch % d.world:
            raise TrainingError(f"train.batch_size {batch} (the global batch) does not split over {d.world} "
                                f"processes. Fix: use a batch size divisible by {d.world}, or --nproc-per-node "
                                "that divides it.")
        guard = DivergenceGuard(factor=spec.train.divergence_factor)
        if checkpoint is not None and d.rank == 0:
            _check_writable(Path(checkpoint))
        start = _resume(resume, loaded, guard, total) if resume else 0
        task = make_task(spec.task)
        guard.floor = float(getattr(task, "init_loss_bound", 0.0))
        model, optimizer = loaded.model, loaded.optimizer
        if fsdp:
            optimizer = _fully_shard(loaded, checkpoint, resume)
        elif d.world > 1:
            model = torch.nn.parallel.DistributedDataParallel(loaded.model)
        if d.world > 1:
            task = ShardedTask(task, d.rank, d.world)
        res = train(model, optimizer, task, steps=total, batch_size=batch, seed=spec.seed,
                    schedule=loaded.schedule, guard=guard, grad_clip=spec.optimizer.grad_clip, start=start,
                    stop=stop)
        record = {"val_loss": res.val_loss if math.isfinite(res.val_loss) else None, "losses": res.losses,
                  "steps": res.steps, "start": start, "world_size": d.world, "global_batch": batch,
                  "diverged": res.diverged, "reason": res.reason, "width": spec.width,
                  "parallel": "fsdp2" if fsdp else "ddp" if d.world > 1 else "none"}
        if d.rank == 0:
            folder = Path(out) if out is not None else Path(path).parent
            write_text_atomic(folder / "train_result.json", json.dumps(record))
            if checkpoint is not None:
                _save(Path(checkpoint), loaded, res.steps, total, guard)
        return record
    finally:
        if d.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _fully_shard(loaded: Any, checkpoint: Any, resume: Any) -> torch.optim.Optimizer:
    """FSDP2 over the loaded model; the optimizer is rebuilt over the sharded (DTensor) parameters,
    whose names and so μP groups are unchanged. Checkpoints of sharded state are not written here."""
    from torch.distributed.fsdp import fully_shard

    if checkpoint is not None or resume is not None:
        raise TrainingError("--fsdp with --checkpoint/--resume: sharded state needs torch.distributed.checkpoint, "
                            "which hptransfer train does not write. Fix: checkpoint a DDP or one-process run.")
    model = loaded.model
    for module in list(model.modules())[1:]:
        if any(True for _ in module.parameters(recurse=False)):
            fully_shard(module)
    fully_shard(model)
    return make_optimizer(model, loaded.spec)


def spec_identity(spec: Any) -> str:
    """A short hash of a run spec: two targets share it only when everything they train with is equal."""
    from ..recipe._runspec import spec_to_dict

    return hashlib.sha256(json.dumps(spec_to_dict(spec), sort_keys=True, default=str).encode()).hexdigest()[:16]


def _check_writable(path: Path) -> None:
    """Refuse, before any training, a checkpoint path that cannot be written."""
    if path.is_dir():
        raise TrainingError(f"--checkpoint {path} is a folder. Fix: name a file in it, e.g. {path / 'target.pt'}.")
    probe = Path(str(path) + ".tmp")
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise TrainingError(f"--checkpoint {path}: cannot write there ({exc.strerror or exc}). Fix: give a path in an "
                            "existing, writable folder; nothing was trained.") from None


def _save(path: Path, loaded: Any, step: int, total: int, guard: DivergenceGuard) -> None:
    state = {"hptransfer_checkpoint": CHECKPOINT_VERSION, "step": int(step), "total_steps": int(total),
             "width": int(loaded.spec.width), "target": spec_identity(loaded.spec),
             "guard_reference": guard.reference, "model": loaded.model.state_dict(),
             "optimizer": loaded.optimizer.state_dict()}
    tmp = Path(str(path) + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)  # a reader never sees half a checkpoint
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        kept = Path(tempfile.gettempdir()) / f"hptransfer-checkpoint-{os.getpid()}-step{step}.pt"
        try:
            torch.save(state, kept)
        except OSError as again:
            raise TrainingError(f"--checkpoint {path}: writing failed ({exc.strerror or exc}), and so did the fallback "
                                f"{kept} ({again.strerror or again}): the trained state is lost. Fix: free space and "
                                "train again (train_result.json was written).") from None
        raise TrainingError(f"--checkpoint {path}: writing failed ({exc.strerror or exc}); the trained state (step "
                            f"{step}) is kept in {kept}. Fix: free space or fix the folder, then move that file "
                            f"there, or resume from it directly: --resume {kept}.") from None


def _resume(path: str | Path, loaded: Any, guard: DivergenceGuard, total: int) -> int:
    fix = "Fix: resume from a file that hptransfer train --checkpoint wrote for this target.yaml."
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # a corrupt, foreign or unpicklable file: all one answer
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise TrainingError(f"--resume {path}: not a readable checkpoint ({type(exc).__name__}: {reason}). {fix}") \
            from None
    if not isinstance(state, dict) or not {"model", "optimizer", "step"} <= set(state):
        raise TrainingError(f"--resume {path}: not an hptransfer checkpoint (no model, optimizer and step). {fix}")
    version, step = state.get("hptransfer_checkpoint"), state["step"]
    if version not in (1, CHECKPOINT_VERSION) or state.get("width") != loaded.spec.width:
        raise TrainingError(f"--resume {path}: not a checkpoint of this target (width {state.get('width')}, layout "
                            f"{version}). {fix}")
    if version == CHECKPOINT_VERSION and state.get("target") != spec_identity(loaded.spec):
        raise TrainingError(f"--resume {path}: a checkpoint of another target at the same width (its run spec "
                            f"differs: other values, optimizer, task or seed). {fix}")
    if not isinstance(step, int) or not 0 <= step <= total:
        raise TrainingError(f"--resume {path}: its step {step!r} is past this schedule of {total} steps. Fix: pass "
                            f"--steps {state.get('total_steps', 'N')} as when it was written.")
    if version == CHECKPOINT_VERSION and state.get("total_steps") != total:
        raise TrainingError(f"--resume {path}: written for a schedule of {state.get('total_steps')} steps, resumed "
                            f"with {total}; the LR schedule would jump. Fix: pass --steps {state.get('total_steps')}.")
    try:
        loaded.model.load_state_dict(state["model"])
        loaded.optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise TrainingError(f"--resume {path}: its state does not fit this model or optimizer ({reason}). {fix}") \
            from None
    guard.reference = state.get("guard_reference")
    return step
