"""The depth axis: block-stack detection, residual-branch tracing and scaling, depth-μP and CompleteP
rules, exactness at base depth, and errors (hptransfer.parametrization._depth, _rules.DepthScaled)."""

from __future__ import annotations

import copy

import pytest
import torch
from _helpers import LlamaStyle, ResMLP, functional_branch_model, gpt_depth

import hptransfer as hpt
from hptransfer.errors import DepthInferenceError, ParametrizationError
from hptransfer.parametrization import ScalingTable, attach_table

TOKENS = torch.randint(0, 32, (2, 8), generator=torch.Generator().manual_seed(0))
VEC = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))


def _build(factory, p, *, depth, base_depth, x, width=32, base_width=16, seed=0, **kw):
    torch.manual_seed(seed)
    return hpt.parametrize(factory, width=width, base_width=base_width, depth=depth, base_depth=base_depth,
                           parametrization=p, example_input=x, **kw)


# ------------------------------------------------------------------ finding the stack and the branches


def test_stack_and_branches_of_the_reference_gpt():
    t = hpt.scaling_table(_build(gpt_depth, "completep", depth=3, base_depth=2, x=TOKENS))
    assert t.depth["stacks"] == ["blocks"]
    assert t.depth["branches"] == [f"blocks.{i}.{b}" for i in range(3) for b in ("attn", "mlp")]
    # block parameters carry the depth multiplier; embeddings, final norm and readout do not
    assert t.params["blocks.2.mlp.fc.weight"].depth_mult == pytest.approx(1.5)
    assert t.params["blocks.0.ln1.weight"].depth_mult == pytest.approx(1.5)
    assert {t.params[n].depth_mult for n in ("wte.weight", "wpe.weight", "ln_f.weight", "lm_head.weight")} == {1.0}


def test_stack_and_branches_of_a_hidden_size_free_resnet_mlp():
    t = hpt.scaling_table(_build(ResMLP, "depth-mup", depth=4, base_depth=1, x=VEC))
    assert t.depth["stacks"] == ["blocks"]
    assert t.depth["branches"] == [f"blocks.{i}.fc2" for i in range(4)]


def test_llama_style_layers_tuple_attention_and_dropout_branch():
    m = _build(LlamaStyle, "completep", depth=2, base_depth=1, x=TOKENS)
    t = hpt.scaling_table(m)
    assert t.depth["stacks"] == ["model.layers"]
    assert t.depth["branches"] == [f"model.layers.{i}.{b}" for i in range(2) for b in ("self_attn", "dropout")]
    assert m(TOKENS).shape == (2, 8, 32)  # the hook scales the first element of the attention's tuple


def test_branches_named_by_pattern():
    t = hpt.scaling_table(_build(gpt_depth, "completep", depth=2, base_depth=1, x=None,
                                 branches=["*.attn.o_proj", "*.mlp.proj"]))
    assert t.depth["branches"] == [f"blocks.{i}.{b}" for i in range(2) for b in ("attn.o_proj", "mlp.proj")]
    assert {ms.module: ms.multiplier for ms in t.module_scalings if ms.kind == "output"} == {
        b: 0.5 for b in t.depth["branches"]}


# ------------------------------------------------------------------ the branch multiplier is the formula


@pytest.mark.parametrize(("p", "alpha"), [("depth-mup", 0.5), ("completep", 1.0)])
def test_each_branch_is_scaled_by_the_formula(p, alpha):
    depth, base_depth = 8, 2
    mult = (base_depth / depth) ** alpha
    scaled = _build(gpt_depth, p, depth=depth, base_depth=base_depth, x=TOKENS)
    plain = _build(gpt_depth, "mup", depth=depth, base_depth=base_depth, x=TOKENS)  # same init draw
    t = hpt.scaling_table(scaled)
    assert [ms.multiplier for ms in t.module_scalings if ms.kind == "output"] == [pytest.approx(mult)] * 16
    x = torch.randn(2, 8, 32)
    with torch.no_grad():
        b = plain.blocks[3]
        h = x + mult * b.attn(b.ln1(x))         # each branch scaled, the stream not
        expected = h + mult * b.mlp(b.ln2(h))
        whole = x + mult * (b(x) - x)            # what scaling the whole block output would give
        got = scaled.blocks[3](x)
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, whole, atol=1e-4)


@pytest.mark.parametrize(("p", "alpha"), [("depth-mup", 0.5), ("completep", 1.0)])
def test_lr_eps_and_weight_decay_follow_the_completep_table(p, alpha):
    m = _build(gpt_depth, p, depth=8, base_depth=2, x=TOKENS, width=64, base_width=16)
    m_d, m_l = 4.0, 4.0
    groups = hpt.param_groups(m, lr=1.0, weight_decay=0.1, scale_eps=True, eps=1.0)
    by_name = {n: g for g in groups for n in g["param_names"]}
    hidden, gain, emb = by_name["blocks.1.mlp.fc.weight"], by_name["blocks.1.ln1.weight"], by_name["wte.weight"]
    assert hidden["lr"] == pytest.approx(m_l ** (alpha - 1) / m_d)
    assert gain["lr"] == pytest.approx(m_l ** (alpha - 1))
    assert emb["lr"] == pytest.approx(1.0) and emb["eps"] == pytest.approx(1.0)
    assert hidden["eps"] == pytest.approx(1 / m_d * m_l ** -alpha)
    assert hidden["weight_decay"] == pytest.approx(0.1 * m_d)  # "hidden weight decay x m_d"
    sgd = {n: g for g in hpt.param_groups(m, lr=1.0, optimizer="sgd") for n in g["param_names"]}
    assert sgd["blocks.1.ln1.weight"]["lr"] == pytest.approx(m_d * m_l ** (2 * alpha - 1))


# ------------------------------------------------------------------ exactness at the base depth


@pytest.mark.parametrize("p", ["depth-mup", "completep"])
@pytest.mark.parametrize(("factory", "x"), [(gpt_depth, TOKENS), (ResMLP, VEC)])
def test_at_base_depth_equals_mup_exactly(p, factory, x):
    models = []
    for name in ("mup", p):
        m = _build(factory, name, depth=3, base_depth=3, x=x)
        opt = hpt.optimizer(m, torch.optim.AdamW, lr=1e-2, weight_decay=0.1, scale_eps=True)
        for _ in range(3):
            opt.zero_grad()
            m(x).float().pow(2).mean().backward()
            opt.step()
        models.append(m)
    mu, deep = models
    assert torch.equal(mu(x), deep(x))
    for (n1, p1), (n2, p2) in zip(mu.named_parameters(), deep.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2), n1


def test_sp_and_mup_only_build_at_the_depth():
    m = _build(gpt_depth, "mup", depth=5, base_depth=2, x=TOKENS)
    t = hpt.scaling_table(m)
    assert len(m.blocks) == 5 and t.depth == {"depth": 5, "base_depth": 2, "alpha": None, "stacks": [],
                                              "branches": []}
    assert all(i.depth_mult == 1.0 for i in t) and not [ms for ms in t.module_scalings if ms.kind == "output"]


# ------------------------------------------------------------------ the metadata survives


def test_depth_metadata_survives_serialisation_deepcopy_and_state_dict():
    m = _build(ResMLP, "completep", depth=4, base_depth=2, x=VEC)
    t = hpt.scaling_table(m)
    assert ScalingTable.from_dict(t.to_dict()) == t
    assert hpt.scaling_table(copy.deepcopy(m)).depth == t.depth
    fresh = ResMLP(32, 4)
    fresh.load_state_dict(m.state_dict())
    attach_table(fresh, ScalingTable.from_dict(t.to_dict()))
    assert torch.equal(fresh(VEC), m(VEC))  # the branch hooks come back with the table
    assert set(m.state_dict()) == set(ResMLP(32, 4).state_dict())  # no extra keys in checkpoints


# ------------------------------------------------------------------ errors


def test_depth_that_sets_no_module_list_is_a_clear_error():
    with pytest.raises(DepthInferenceError, match="no module list .* depth argument"):
        _build(lambda w, d: ResMLP(w, 3), "completep", depth=4, base_depth=2, x=VEC)


def test_functional_branch_is_a_clear_error():
    with pytest.raises(DepthInferenceError, match=r"no submodule returned.*branches="):
        _build(functional_branch_model, "completep", depth=4, base_depth=2, x=VEC)


def test_depth_rule_without_depth_or_tracing_input():
    with pytest.raises(ParametrizationError, match="depth= was not given"):
        hpt.parametrize(lambda w: ResMLP(w, 2), width=32, base_width=16, parametrization="completep")
    with pytest.raises(DepthInferenceError, match="example_input"):
        _build(ResMLP, "completep", depth=4, base_depth=2, x=None)
    with pytest.raises(ParametrizationError, match="branches="):
        _build(ResMLP, "mup", depth=4, base_depth=2, x=VEC, branches=["*.fc2"])
    with pytest.raises(DepthInferenceError, match="match no submodule"):
        _build(ResMLP, "completep", depth=2, base_depth=1, x=None, branches=["*.nothing"])


def test_registry_carries_citations():
    for name, arxiv in (("depth-mup", "2310.02244"), ("completep", "2505.01618")):
        rule = hpt.get_parametrization(name)
        assert arxiv in rule.citation and rule.depth_alpha in (0.5, 1.0)
    assert {"sp", "mup", "depth-mup", "completep"} <= set(hpt.available_parametrizations())


def test_the_docs_example_runs_as_written():
    import re

    from _helpers import ROOT

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "depth.md").read_text(encoding="utf-8"), re.S)
    ns: dict = {}
    exec(compile(blocks[0], "docs/depth.md", "exec"), ns)
    t = hpt.scaling_table(ns["model"])
    assert t.depth["stacks"] == ["blocks"] and t.depth["alpha"] == 1.0 and len(t.depth["branches"]) == 16
    assert {g.get("eps") for g in ns["opt"].param_groups} >= {1e-8 / 4 / 4}  # hidden: eps / (m_d m_L)
