"""Models written the way users write them (torch's own encoder layer, an LSTM, a BatchNorm
ResNet block) -- none was used to choose the coordinate-check tolerances: μP passes, SP fails.

They run the probe (hptransfer.coord._probe) on nested containers and tuple outputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _helpers import LSTMLM
from torch import nn

import hptransfer as hpt


class Encoder(nn.Module):
    def __init__(self, w: int, vocab: int = 64):
        super().__init__()
        self.emb = nn.Embedding(vocab, w)
        layer = nn.TransformerEncoderLayer(w, 4, 4 * w, dropout=0.0, batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(w, vocab)

    def forward(self, x):
        return self.head(self.enc(self.emb(x)))


class ResNet(nn.Module):
    def __init__(self, w: int):
        super().__init__()
        self.stem = nn.Conv2d(3, w, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
                                   nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w))
        self.fc = nn.Linear(w, 10)

    def forward(self, x):
        h = F.relu(self.stem(x))
        return self.fc(F.relu(h + self.block(h)).mean((2, 3)))


def _tokens(step):
    g = torch.Generator().manual_seed(step)
    x = torch.randint(0, 64, (8, 16), generator=g)
    return x, x


def _images(step):
    g = torch.Generator().manual_seed(step)
    return torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g)


def _lm_loss(out, y):
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


@pytest.mark.parametrize("factory,batch_fn,loss_fn", [
    pytest.param(Encoder, _tokens, _lm_loss, marks=pytest.mark.slow),  # 11 s; the LSTM guards the default run
    (LSTMLM, _tokens, _lm_loss),
    pytest.param(ResNet, _images, F.cross_entropy, marks=pytest.mark.slow)])  # 6 s; BatchNorm: test_vision_models
def test_user_style_models(factory, batch_fn, loss_fn):
    kw = dict(widths=[32, 64, 128, 256], batch_fn=batch_fn, loss_fn=loss_fn, steps=3, seeds=(0, 1))
    mu = hpt.coord_check(factory, parametrization="mup", **kw)
    assert mu.passed, mu.summary()
    sp = hpt.coord_check(factory, parametrization="sp", **kw)
    assert not sp.passed
    assert sp.failing[0][3] > 0.5  # worst slope: clear growth, not a borderline call
