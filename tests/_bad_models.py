"""Model factories that are wrong in one way each, for the bad-input table (tests/cli/test_main.py).

The classification task's inputs have 32 features and 10 classes (its defaults).
"""

from __future__ import annotations

import types

import torch
from torch import nn

D_IN, N_CLASSES = 32, 10


class _Net(nn.Module):
    def __init__(self, width: int, n_out: int = N_CLASSES):
        super().__init__()
        self.hidden = nn.Linear(D_IN, width)
        self.readout = nn.Linear(width, n_out)

    def forward(self, x):
        return self.readout(torch.relu(self.hidden(x)))


def good(width):
    return _Net(width)


def takes_d_model(d_model):  # the width argument has another name: model.width_arg
    return _Net(d_model)


def keyword_only_size(*, size):
    return _Net(size)


def returns_none(width):
    _Net(width)


def returns_string(width):
    return f"model of width {width}"


def raises_inside(width):
    raise RuntimeError(f"cannot build a model of width {width}")


def heads_must_divide(width):
    if width % 12:
        raise ValueError(f"embed_dim {width} must be divisible by num_heads 12")
    return _Net(width)


def wrong_class_count(width):
    return _Net(width, n_out=7)


class _Tuple(_Net):
    def forward(self, x):
        return super().forward(x), {"aux": 0.0}


def forward_returns_tuple(width):  # handled: the first element is the logits
    return _Tuple(width)


class _HF(_Net):
    def forward(self, x):
        return types.SimpleNamespace(logits=super().forward(x), hidden_states=None)


def forward_returns_output_object(width):  # handled: `.logits`, as Hugging Face models return
    return _HF(width)


class _Dict(_Net):
    def forward(self, x):
        return {"scores": super().forward(x)}


def forward_returns_dict_without_logits(width):
    return _Dict(width)


class _NaN(_Net):
    def forward(self, x):
        return super().forward(x) * float("nan")


def nan_output(width):
    return _NaN(width)


class _ShapeBug(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.hidden = nn.Linear(D_IN + 1, width)  # one input feature too many
        self.readout = nn.Linear(width, N_CLASSES)

    def forward(self, x):
        return self.readout(self.hidden(x))


def forward_shape_bug(width):
    return _ShapeBug(width)


class _Ints(_Net):
    def forward(self, x):
        return super().forward(x).argmax(-1)


def forward_returns_class_ids(width):
    return _Ints(width)


class _Fixed(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.layer = nn.Linear(D_IN, N_CLASSES)  # ignores the width

    def forward(self, x):
        return self.layer(x)


def ignores_width(width):
    return _Fixed(width)


class _NoParams(nn.Module):
    def forward(self, x):
        return x[:, :N_CLASSES]


def no_parameters(width):
    return _NoParams()


NOT_CALLABLE = 3
