"""lr_form="multipliers": the Adam LR multipliers moved into forward multipliers and init.

hptransfer's own groups on a folded model train exactly as the groups form does (every optimizer
family, weight decay either way, the depth rules); one Adam LR for every tensor trains μP up to the
optimizer's epsilon; what cannot be folded exactly is refused by name."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hptransfer as hpt
from hptransfer.errors import OptimizerConfigError, ParametrizationError
from hptransfer.models import gpt
from hptransfer.parametrization import ScalingTable


def _factory(width, depth=2):
    return gpt(int(width), vocab_size=64, block_size=16, n_layer=depth)


DATA = torch.randint(0, 64, (12, 8, 17), generator=torch.Generator().manual_seed(1))


def _model(form, rule="mup", width=96, depth=None):
    torch.manual_seed(0)
    extra = {} if depth is None else {"depth": depth, "base_depth": 2, "example_input": DATA[0, :, :-1]}
    return hpt.parametrize(_factory, width=width, base_width=32, parametrization=rule, lr_form=form, **extra)


def _train(model, opt, steps=8):
    losses = []
    for s in range(steps):
        loss = F.cross_entropy(model(DATA[s, :, :-1]).flatten(0, 1), DATA[s, :, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return torch.tensor(losses)


def _effective(model):
    """Each tensor as the groups form stores it: a folded one times its factor."""
    table = hpt.scaling_table(model)
    return {n: p.detach() * table.info(n).lr_folded for n, p in model.named_parameters()}


CASES = [("mup", torch.optim.Adam, 0.0), ("mup", torch.optim.AdamW, 0.1), ("mup", torch.optim.Adam, 0.1),
         ("mup", torch.optim.SGD, 0.01), ("depth-mup", torch.optim.AdamW, 0.1)]


@pytest.mark.parametrize("rule,cls,wd", CASES, ids=[f"{r}-{c.__name__}-wd{w}" for r, c, w in CASES])
def test_hptransfers_groups_on_a_folded_model_train_bit_for_bit_as_the_groups_form(rule, cls, wd):
    # Width x4 and depth x4 make every factor a power of two, so the two forms round alike: any
    # epsilon, decay or LR carried over wrongly shows as a difference, however small.
    depth = 8 if rule == "depth-mup" else None
    lr = 0.1 if cls is torch.optim.SGD else 3e-3
    ref, folded = _model("groups", rule, width=128, depth=depth), _model("multipliers", rule, width=128, depth=depth)
    assert any(i.lr_folded != 1.0 for i in hpt.scaling_table(folded))
    a = _train(ref, hpt.optimizer(ref, cls, lr=lr, weight_decay=wd))
    b = _train(folded, hpt.optimizer(folded, cls, lr=lr, weight_decay=wd))
    assert torch.equal(a, b)
    got, want = _effective(folded), _effective(ref)
    assert [n for n in want if not torch.equal(got[n], want[n])] == []


def test_at_other_width_ratios_the_forms_part_by_round_off_only():
    ref, folded = _model("groups"), _model("multipliers")  # width x3: factors 1/3
    torch.testing.assert_close(folded(DATA[0, :, :-1]), ref(DATA[0, :, :-1]), rtol=1e-5, atol=1e-6)
    a = _train(ref, hpt.optimizer(ref, torch.optim.AdamW, lr=3e-3, weight_decay=0.1))
    b = _train(folded, hpt.optimizer(folded, torch.optim.AdamW, lr=3e-3, weight_decay=0.1))
    torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)


def test_one_adam_lr_for_every_tensor_trains_mup_up_to_epsilon():
    ref, folded, sp = _model("groups"), _model("multipliers"), _model("groups", "sp")
    want = _train(ref, hpt.optimizer(ref, torch.optim.AdamW, lr=3e-3, weight_decay=0.1), steps=12)
    got = _train(folded, torch.optim.AdamW(folded.parameters(), lr=3e-3, weight_decay=0.1), steps=12)
    as_sp = _train(sp, torch.optim.AdamW(sp.parameters(), lr=3e-3, weight_decay=0.1), steps=12)
    gap, sp_gap = (got - want).abs().max().item(), (as_sp - want).abs().max().item()
    assert gap < 1e-4 and sp_gap > 1e-2, (gap, sp_gap)


def test_one_sgd_lr_on_a_folded_model_is_stopped_since_sgd_needs_the_square():
    folded = _model("multipliers")
    with pytest.raises(OptimizerConfigError, match="SGD trains a mup model with LRs that ignore"):
        _train(folded, torch.optim.SGD(folded.parameters(), lr=0.1), steps=1)


def test_the_folded_form_survives_its_table_a_state_dict_and_a_deepcopy():
    folded = _model("multipliers")
    table = hpt.scaling_table(folded)
    assert ScalingTable.from_dict(table.to_dict()) == table
    assert table.options["lr_form"] == "multipliers" and "lr_form" not in hpt.scaling_table(_model("groups")).options
    q = table.info("blocks.0.attn.q_proj.weight")
    assert q.lr_folded == pytest.approx(1 / 3) and table.info("wte.weight").lr_folded == 1.0
    _train(folded, torch.optim.AdamW(folded.parameters(), lr=3e-3), steps=2)
    x = DATA[0, :, :-1]
    again = _model("multipliers")
    again.load_state_dict(folded.state_dict())
    torch.testing.assert_close(again(x), folded(x), rtol=0, atol=0)
    torch.testing.assert_close(copy.deepcopy(folded)(x), folded(x), rtol=0, atol=0)


def test_at_the_base_width_nothing_is_folded():
    folded = _model("multipliers", width=32)
    assert all(i.lr_folded == 1.0 for i in hpt.scaling_table(folded)) and not hpt.scaling_table(folded).module_scalings


class _RawHidden(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.inp = nn.Linear(8, int(width))
        self.w = nn.Parameter(torch.randn(int(width), int(width)) / int(width) ** 0.5)
        self.out = nn.Linear(int(width), 4)

    def forward(self, x):
        return self.out(torch.relu(self.inp(x) @ self.w))


def test_a_tensor_used_by_hand_is_refused_by_name_with_the_fix():
    with pytest.raises(ParametrizationError, match=r"LR multiplier of 'w'.*_RawHidden.*lr_form='groups'"):
        hpt.parametrize(_RawHidden, width=64, base_width=16, lr_form="multipliers")
    with pytest.raises(ParametrizationError, match="lr_form='mixed' is unknown"):
        hpt.parametrize(_RawHidden, width=64, base_width=16, lr_form="mixed")


class _ReadsChildWeight(nn.Module):
    """A parent that calls F.linear with its child's weight (timm's BEiT attention does, to add its own
    qkv bias): the child's forward, where a multiplier would act, never runs."""

    def __init__(self, width):
        super().__init__()
        w = int(width)
        self.inp = nn.Linear(8, w)
        self.qkv = nn.Linear(w, w, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(w))
        self.out = nn.Linear(w, 4)

    def forward(self, x):
        return self.out(torch.relu(F.linear(self.inp(x), self.qkv.weight, self.q_bias)))


def test_a_folded_weight_read_outside_its_module_is_refused_at_parametrize_or_first_call():
    match = r"'qkv.weight'.*read outside 'qkv''s forward \(in '\(root\)'\)"
    with pytest.raises(ParametrizationError, match=match):
        hpt.parametrize(_ReadsChildWeight, width=64, base_width=16, lr_form="multipliers",
                        example_input=torch.randn(2, 8))
    model = hpt.parametrize(_ReadsChildWeight, width=64, base_width=16, lr_form="multipliers")
    with pytest.raises(ParametrizationError, match=match):
        model(torch.randn(2, 8))
    hpt.parametrize(_ReadsChildWeight, width=64, base_width=16)(torch.randn(2, 8))  # the groups form is fine


def test_torchs_transformer_layer_is_refused_by_name():
    def factory(width):
        return nn.Sequential(nn.Linear(8, int(width)), nn.TransformerEncoderLayer(int(width), 2, 2 * int(width),
                                                                                   batch_first=True),
                             nn.Linear(int(width), 4))
    with pytest.raises(ParametrizationError, match=r"'1.self_attn.in_proj_weight'.*MultiheadAttention"):
        hpt.parametrize(factory, width=64, base_width=16, lr_form="multipliers", example_input=torch.randn(2, 3, 8))


class _ScaledHidden(nn.Module):
    """A width-dependent constant after a folded layer (held at its base value by the rewrite)."""

    def __init__(self, width):
        super().__init__()
        self.w = int(width)
        self.inp, self.h, self.out = nn.Linear(8, self.w), nn.Linear(self.w, self.w), nn.Linear(self.w, 4)

    def forward(self, x):
        return self.out(self.h(torch.relu(self.inp(x))) * self.w ** -0.5)


@pytest.mark.parametrize("eager", [True, False], ids=["example_input", "first_call"])
def test_constants_and_attention_are_measured_on_the_unfolded_model(eager):
    x = torch.randn(4, 8)
    built = {}
    for form in ("groups", "multipliers"):
        torch.manual_seed(0)
        built[form] = hpt.parametrize(_ScaledHidden, width=256, base_width=16, lr_form=form,
                                      example_input=x if eager else None)
        built[form](x)
    kept = [[m for m in hpt.scaling_table(built[f]).module_scalings if not m.reason.startswith("lr_form")]
            for f in ("groups", "multipliers")]
    assert kept[0] == kept[1] and any(m.kind == "constant" for m in kept[0])
    torch.testing.assert_close(built["multipliers"](x), built["groups"](x), rtol=1e-5, atol=1e-6)


class _StdLinear(nn.Linear):
    """A weight-standardised linear (as timm's StdConv2d): not linear in its weight."""

    def forward(self, x):
        w = (self.weight - self.weight.mean(1, keepdim=True)) / (self.weight.std(1, keepdim=True) + 1e-5)
        return F.linear(x, w, self.bias)


def test_a_subclass_with_its_own_forward_is_refused():
    def factory(width):
        return nn.Sequential(nn.Linear(8, int(width)), _StdLinear(int(width), int(width)), nn.Linear(int(width), 4))
    with pytest.raises(ParametrizationError, match=r"'1.weight'.*_StdLinear.*with their own forward"):
        hpt.parametrize(factory, width=64, base_width=16, lr_form="multipliers")


def test_adam_with_decoupled_decay_is_carried_as_adamw():
    ref, folded = _model("groups", width=128), _model("multipliers", width=128)
    kw = {"lr": 3e-3, "weight_decay": 0.1, "decoupled_weight_decay": True}
    assert torch.equal(_train(ref, hpt.optimizer(ref, torch.optim.Adam, **kw)),
                       _train(folded, hpt.optimizer(folded, torch.optim.Adam, **kw)))


def test_an_optimizer_built_with_another_eps_than_its_groups_is_named(caplog):
    folded = _model("multipliers")
    opt = torch.optim.AdamW(hpt.param_groups(folded, lr=3e-3), lr=3e-3, eps=1e-6)
    with caplog.at_level("WARNING", logger="hptransfer"):
        _train(folded, opt, steps=1)
    assert "built with eps=1e-06" in caplog.text and "pass the same eps=" in caplog.text


def test_a_refusal_at_the_first_call_repeats_at_every_call():
    model = hpt.parametrize(_ReadsChildWeight, width=64, base_width=16, lr_form="multipliers")
    for _ in range(2):
        with pytest.raises(ParametrizationError, match="read outside"):
            model(torch.randn(2, 8))


class _CastsToChildDtype(_ReadsChildWeight):
    def forward(self, x):  # reads the folded weight's dtype only (T5's feed-forward does)
        return self.out(torch.relu(self.qkv(self.inp(x).to(self.qkv.weight.dtype))) + self.q_bias)


def test_reading_a_folded_weights_dtype_is_not_a_use():
    model = hpt.parametrize(_CastsToChildDtype, width=64, base_width=16, lr_form="multipliers",
                            example_input=torch.randn(2, 8))
    assert hpt.scaling_table(model).info("qkv.weight").lr_folded == 0.25
