"""transformers.Trainer on a parametrized tiny Llama: hptransfer.hf.Trainer's groups are
hptransfer.optimizer's, it trains exactly as a plain loop does, its checkpoints resume bit for bit
and reload through hf.from_pretrained; a plain Trainer is stopped before it trains μP as SP."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import hptransfer as hpt  # noqa: E402
from hptransfer import hf  # noqa: E402
from hptransfer.errors import OptimizerConfigError  # noqa: E402

transformers.logging.set_verbosity_error()
VOCAB, T = 64, 12


def _config():
    c = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, head_dim=8, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, vocab_size=VOCAB,
                                 max_position_embeddings=T, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    c._attn_implementation = "sdpa"
    return c


def _model():
    torch.manual_seed(0)
    model = hf.parametrize_config(transformers.LlamaForCausalLM, _config(), width=64, base_width=32)
    model(torch.zeros(1, 4, dtype=torch.long))  # trace attention once, so the table is complete
    return model


class _Data(torch.utils.data.Dataset):
    def __init__(self, n: int = 48) -> None:
        g = torch.Generator().manual_seed(1)
        start = torch.randint(0, VOCAB, (n, 1), generator=g)
        self.x = (start + torch.arange(T)) % VOCAB  # counting sequences: learnable, so losses move

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.x[i], "labels": self.x[i]}


class _InOrder(hf.Trainer):
    """Batches in dataset order, so that a plain loop can see the same ones."""

    def _get_train_sampler(self, *args, **kwargs):
        return torch.utils.data.SequentialSampler(self.train_dataset)


def _args(tmp_path, **kw):
    base = {"output_dir": str(tmp_path / "out"), "max_steps": 6, "per_device_train_batch_size": 8,
            "learning_rate": 3e-3, "weight_decay": 0.1, "adam_beta2": 0.95, "adam_epsilon": 1e-7,
            "warmup_steps": 2, "lr_scheduler_type": "linear", "report_to": [], "use_cpu": True,
            "save_strategy": "no", "logging_strategy": "no", "seed": 0, "disable_tqdm": True}
    return transformers.TrainingArguments(**{**base, **kw})


def _by_name(model, opt):
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (g["lr"], g["weight_decay"], g["betas"], g["eps"]) for g in opt.param_groups
            for p in g["params"]}


def test_the_trainers_groups_are_hptransfer_optimizers_from_the_training_arguments(tmp_path):
    model = _model()
    trainer = hf.Trainer(model=model, args=_args(tmp_path), train_dataset=_Data())
    opt = trainer.create_optimizer()
    want = hpt.optimizer(model, torch.optim.AdamW, lr=3e-3, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-7,
                         decay=trainer.get_decay_parameter_names(model))
    assert type(opt) is torch.optim.AdamW and _by_name(model, opt) == _by_name(model, want)
    got = _by_name(model, opt)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert got[q][0] == pytest.approx(3e-3 / 2) and got["model.embed_tokens.weight"][0] == pytest.approx(3e-3)
    assert got["model.norm.weight"][1] == 0.0 and got[q][1] > 0  # the Trainer's rule: no decay for norms


def test_the_trainer_trains_as_a_plain_loop_with_hptransfer_optimizer_does(tmp_path):
    model = _model()
    trainer = _InOrder(model=model, args=_args(tmp_path), train_dataset=_Data())
    trainer.train()

    ref = _model()
    opt = hpt.optimizer(ref, torch.optim.AdamW, lr=3e-3, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-7,
                        decay=trainer.get_decay_parameter_names(ref))
    sched = transformers.get_linear_schedule_with_warmup(opt, 2, 6)
    data = _Data()
    ref.train()
    for step in range(6):
        batch = {k: v[step * 8:(step + 1) * 8] for k, v in {"input_ids": data.x, "labels": data.x}.items()}
        ref(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)  # the Trainer's max_grad_norm
        opt.step()
        sched.step()
        opt.zero_grad()
    for (n, a), b in zip(model.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=n)


def test_checkpoints_resume_bit_for_bit_and_reload_with_the_table(tmp_path):
    whole = _InOrder(model=_model(), args=_args(tmp_path / "a"), train_dataset=_Data())
    whole.train()

    first = _InOrder(model=_model(), args=_args(tmp_path / "b", max_steps=6, save_strategy="steps", save_steps=3),
                     train_dataset=_Data())
    first.train()
    ckpt = tmp_path / "b" / "out" / "checkpoint-3"
    assert json.loads((ckpt / "hptransfer_table.json").read_text())["parametrization"] == "mup"
    resumed = _InOrder(model=_model(), args=_args(tmp_path / "b"), train_dataset=_Data())
    resumed.train(resume_from_checkpoint=str(ckpt))
    for (n, a), b in zip(whole.model.named_parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b), n

    resumed.save_model(str(tmp_path / "final"))
    back = hf.from_pretrained(transformers.LlamaForCausalLM, tmp_path / "final")
    x = _Data().x[:2]
    resumed.model.eval()
    assert torch.equal(back(x).logits, resumed.model(x).logits)
    plain = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path / "final"))
    assert not torch.allclose(plain(x).logits, back(x).logits)  # why the table must travel with the weights


def test_a_plain_trainer_on_a_mup_model_is_stopped_with_the_fix(tmp_path):
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = transformers.Trainer(model=model, args=_args(tmp_path), train_dataset=_Data())
    with pytest.raises(OptimizerConfigError, match=r"AdamW trains a mup model .* hptransfer\.hf\.Trainer"):
        trainer.train()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # nothing trained


def test_optim_choices_that_build_their_own_groups_are_refused(tmp_path):
    model = _model()
    trainer = hf.Trainer(model=model, args=_args(tmp_path), train_dataset=_Data(),
                         optimizer_cls_and_kwargs=(torch.optim.AdamW, {"lr": 1e-3, "params": model.parameters()}))
    with pytest.raises(OptimizerConfigError, match=r"builds its own parameter groups.*adamw_torch"):
        trainer.create_optimizer()


class _PlainInOrder(transformers.Trainer):
    def _get_train_sampler(self, *args, **kwargs):
        return torch.utils.data.SequentialSampler(self.train_dataset)


def test_a_plain_trainer_trains_mup_on_a_model_with_lr_form_multipliers(tmp_path):
    # No clipping: clip_grad_norm_ measures the folded tensors' gradients (c x grad), the one place
    # besides epsilon where the two forms part (docs/parametrization.md).
    args = {"max_grad_norm": 0.0, "max_steps": 12}
    mup = _InOrder(model=_model(), args=_args(tmp_path / "g", **args), train_dataset=_Data())
    mup.train()
    torch.manual_seed(0)
    folded = hf.parametrize_config(transformers.LlamaForCausalLM, _config(), width=64, base_width=32,
                                   lr_form="multipliers")
    plain = _PlainInOrder(model=folded, args=_args(tmp_path / "m", **args), train_dataset=_Data())
    plain.train()  # one AdamW LR for every tensor: not stopped, since that is what the table asks
    torch.manual_seed(0)
    sp = hf.parametrize_config(transformers.LlamaForCausalLM, _config(), width=64, base_width=32, parametrization="sp")
    _PlainInOrder(model=sp, args=_args(tmp_path / "s", **args), train_dataset=_Data()).train()
    x = _Data().x[:4]
    for m in (mup.model, folded, sp):
        m.eval()
    want = mup.model(x).logits
    gap, sp_gap = (folded(x).logits - want).abs().max().item(), (sp(x).logits - want).abs().max().item()
    assert gap < 2e-4 and sp_gap > 0.1, (gap, sp_gap)  # measured: 3.3e-5 against 0.97
    hf.save_pretrained(folded, tmp_path / "folded")  # the folded tensors and their multipliers travel together
    back = hf.from_pretrained(transformers.LlamaForCausalLM, tmp_path / "folded")
    assert torch.equal(back(x).logits, folded(x).logits)
