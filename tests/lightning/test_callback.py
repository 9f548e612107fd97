"""A LightningModule trained with hptransfer: μP groups and a schedule from configure_optimizers,
checkpoints that reload to the same outputs, and trials that report to tune's pruner."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

L = pytest.importorskip("lightning")

import hptransfer as hpt  # noqa: E402
from hptransfer.errors import TrainingDiverged  # noqa: E402
from hptransfer.lightning import ReportCallback  # noqa: E402
from hptransfer.models import mlp  # noqa: E402

STEPS = 12


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(192, 16, generator=g)
    y = (x @ torch.randn(16, 4, generator=g)).argmax(1)  # a teacher's labels: learnable
    return DataLoader(TensorDataset(x, y), batch_size=16)


class Lit(L.LightningModule):
    def __init__(self, width: int = 32, lr: float = 1e-2, base_width: int = 16) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = hpt.parametrize(lambda w: mlp(w, d_in=16, n_classes=4), width=width, base_width=base_width)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        opt = hpt.optimizer(self.net, torch.optim.AdamW, lr=self.hparams.lr, weight_decay=0.01)
        sched = hpt.lr_scheduler(opt, lambda step: 1.0 - step / (2 * STEPS))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _trainer(steps: int = STEPS, **kw) -> L.Trainer:
    return L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                     enable_model_summary=False, enable_checkpointing=False, **kw)


def test_configure_optimizers_with_hptransfer_keeps_the_mup_ratios_through_the_schedule():
    torch.manual_seed(0)
    module = Lit(width=64)
    _trainer().fit(module, _loader())
    opt = module.trainer.optimizers[0]
    lrs = {round(g["lr_mult"], 6): g["lr"] for g in opt.param_groups}
    assert set(lrs) == {0.25, 1.0}  # hidden layers at 16/64 of the input layer's LR (Adam, μP)
    assert lrs[0.25] == pytest.approx(0.25 * lrs[1.0]) and lrs[1.0] == pytest.approx(1e-2 * (1 - STEPS / 24))


def test_a_checkpoint_reloads_to_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    module = Lit(width=64)
    trainer = _trainer()
    trainer.fit(module, _loader())
    trainer.save_checkpoint(tmp_path / "lit.ckpt")
    back = Lit.load_from_checkpoint(tmp_path / "lit.ckpt")
    x = torch.randn(5, 16)
    module.eval(), back.eval()
    assert torch.equal(back.net(x), module.net(x))


def test_report_is_called_once_per_optimizer_step_and_what_it_raises_ends_fit():
    seen: list[tuple[int, float]] = []
    torch.manual_seed(0)
    _trainer(callbacks=[ReportCallback(lambda s, v: seen.append((s, v)))], accumulate_grad_batches=2).fit(
        Lit(), _loader())
    assert [s for s, _ in seen] == list(range(STEPS))
    assert all(v > 0 for _, v in seen)

    def diverge(step: int, loss: float) -> None:
        if step == 3:
            raise TrainingDiverged(step, loss, "loss exploded")

    with pytest.raises(TrainingDiverged):
        _trainer(callbacks=[ReportCallback(diverge)]).fit(Lit(), _loader())


def train_fn(hp, *, width, seed, report):
    torch.manual_seed(seed)
    module = Lit(width=width, lr=hp["lr"])
    _trainer(callbacks=[ReportCallback(report)]).fit(module, _loader())
    x, y = _loader().dataset.tensors
    with torch.no_grad():
        return float(F.cross_entropy(module.net(x), y))


def test_tune_prunes_and_stops_a_lightning_modules_trials_through_report(tmp_path):
    res = hpt.tune(train_fn, space={"lr": ("log_float", 1e-3, 1e3)}, width=32, steps=STEPS, trials=6,
                   pruner="median", out=tmp_path, quiet=True, overrides=["tune.startup_trials=2",
                                                                         "tune.report_every=2"])
    trials = res.study.get_trials(deepcopy=False)
    assert len(trials) == 6
    # every trial's curve reached the study: reported to the pruner, or stopped by report's divergence check
    assert all(t.intermediate_values or t.user_attrs.get("diverged") for t in trials)
    stopped = [t for t in trials if t.user_attrs.get("diverged") or t.state.name == "PRUNED"]
    assert stopped and all(t.user_attrs["train_steps"] < STEPS for t in stopped)  # LRs up to 1e3: ended early
    assert res.n_complete - res.n_diverged >= 1
