"""The `mup` package (1.0.0) as a test oracle.

The same architecture is written twice: once by hand for `mup` (``MuReadout``, 1/d attention,
``set_base_shapes``, ``MuAdam``/``MuSGD``) and once as a plain model that hptransfer rewrites
from outside. We check that the initial weights, per-parameter learning rates and readout
multipliers agree, and that training from the same weights gives the same loss trajectory.

Deliberate differences (also in docs/parametrization.md):
* Attention: mup's README writes ``attn_mult / d``; hptransfer uses ``sqrt(d_base) / d`` so
  that μP equals SP at the base width. The hand-written mup model here uses the same constant.
* Tied readout: ``MuSharedReadout`` rescales the shared tensor by sqrt(m) in
  ``set_base_shapes``, which also scales the input embedding; hptransfer leaves a tied tensor's
  init alone. Trajectories are compared from identical weights, so this test still applies.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

mup = pytest.importorskip("mup")

import hptransfer as hpt  # noqa: E402

BASE, DELTA, WIDTH = 16, 32, 128


class MLP(nn.Module):
    def __init__(self, width: int, mu: bool = False):
        super().__init__()
        self.input = nn.Linear(20, width)
        self.hidden = nn.Linear(width, width)
        self.readout = mup.MuReadout(width, 7) if mu else nn.Linear(width, 7)

    def forward(self, x):
        return self.readout(F.relu(self.hidden(F.relu(self.input(x)))))


class Transformer(nn.Module):
    def __init__(self, width: int, mu: bool = False, tied: bool = False, vocab: int = 50, T: int = 12, heads: int = 2):
        super().__init__()
        self.heads, self.mu = heads, mu
        self.head_dim, self.base_head_dim = width // heads, BASE // heads
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(T, width)
        self.ln1, self.ln2, self.ln_f = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.q, self.k, self.v, self.o = (nn.Linear(width, width) for _ in range(4))
        self.fc, self.proj = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)
        if mu and tied:
            self.head = mup.MuSharedReadout(self.wte.weight, bias=False)
        elif mu:
            self.head = mup.MuReadout(width, vocab, bias=False)
        else:
            self.head = nn.Linear(width, vocab, bias=False)
            if tied:
                self.head.weight = self.wte.weight

    def forward(self, idx):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T))
        h = self.ln1(x)
        q, k, v = (p(h).view(B, T, self.heads, self.head_dim).transpose(1, 2) for p in (self.q, self.k, self.v))
        # mup's side writes μP attention by hand; hptransfer's side leaves SDPA's default scale.
        scale = math.sqrt(self.base_head_dim) / self.head_dim if self.mu else None
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
        x = x + self.o(a.transpose(1, 2).reshape(B, T, -1))
        x = x + self.proj(F.gelu(self.fc(self.ln2(x))))
        return self.head(self.ln_f(x))


def _mup_model(cls, **kw):
    model = cls(WIDTH, mu=True, **kw)
    mup.set_base_shapes(model, cls(BASE, mu=True, **kw), delta=cls(DELTA, mu=True, **kw))
    return model


def _ours(cls, **kw):
    return hpt.parametrize(lambda w: cls(w, **kw), width=WIDTH, base_width=BASE, probe_width=DELTA)


def _lrs_mup(model, opt):
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: g["lr"] for g in opt.param_groups for p in g["params"]}


def _lrs_ours(groups):
    return {n: g["lr"] for g in groups for n in g["param_names"]}


@pytest.mark.parametrize("cls", [MLP, Transformer])
def test_same_initial_weights_from_same_seed(cls):
    torch.manual_seed(0)
    ref = _mup_model(cls)
    torch.manual_seed(0)
    ours = _ours(cls)
    ref_sd, ours_sd = ref.state_dict(), ours.state_dict()
    assert ref_sd.keys() == ours_sd.keys()
    for k in ref_sd:
        assert torch.allclose(ref_sd[k], ours_sd[k], rtol=1e-6, atol=1e-7), k


@pytest.mark.parametrize("cls,kw", [(MLP, {}), (Transformer, {}), (Transformer, {"tied": True})])
@pytest.mark.parametrize("family", ["adam", "sgd"])
def test_same_lrs_multipliers_and_trajectory(cls, kw, family):
    torch.manual_seed(0)
    ref = _mup_model(cls, **kw)
    ours = _ours(cls, **kw)
    ours.load_state_dict(ref.state_dict())  # identical starting weights

    # readout multiplier: mup's output_mult / width_mult
    (ms,) = hpt.scaling_table(ours).module_scalings
    assert ms.multiplier == pytest.approx(1.0 / ref.head.width_mult() if cls is Transformer
                                          else 1.0 / ref.readout.width_mult())

    lr = 3e-3 if family == "adam" else 0.05
    if family == "adam":
        ref_opt = mup.MuAdam(ref.parameters(), lr=lr, weight_decay=0.01)
        our_opt = torch.optim.Adam(hpt.param_groups(ours, lr=lr, weight_decay=0.01, optimizer="adam"), lr=lr)
    else:
        ref_opt = mup.MuSGD(ref.parameters(), lr=lr, momentum=0.9, weight_decay=0.01)
        our_opt = torch.optim.SGD(hpt.param_groups(ours, lr=lr, weight_decay=0.01, optimizer="sgd"), lr=lr,
                                  momentum=0.9)
    ours_lrs = _lrs_ours(our_opt.param_groups)
    ref_lrs = _lrs_mup(ref, ref_opt)
    assert ours_lrs.keys() == ref_lrs.keys()
    for k in ref_lrs:
        assert ours_lrs[k] == pytest.approx(ref_lrs[k], rel=1e-12), k
    ref_wd = {n: g["weight_decay"] for n, g in zip(ref_lrs, [g for g in ref_opt.param_groups for _ in g["params"]])}
    our_wd = {n: g["weight_decay"] for g in our_opt.param_groups for n in g["param_names"]}
    for k in ref_wd:
        assert our_wd[k] == pytest.approx(ref_wd[k], rel=1e-12), k

    gen = torch.Generator().manual_seed(1)
    ref_losses, our_losses = [], []
    for _ in range(6):
        if cls is MLP:
            x, y = torch.randn(16, 20, generator=gen), torch.randint(0, 7, (16,), generator=gen)
        else:
            x = torch.randint(0, 50, (4, 12), generator=gen)
            y = torch.randint(0, 50, (4, 12), generator=gen)
        for model, opt, out in ((ref, ref_opt, ref_losses), (ours, our_opt, our_losses)):
            opt.zero_grad()
            logits = model(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            loss.backward()
            opt.step()
            out.append(loss.item())
    assert our_losses == pytest.approx(ref_losses, rel=1e-5, abs=1e-6)
    assert our_losses[-1] != our_losses[0]  # it trained
