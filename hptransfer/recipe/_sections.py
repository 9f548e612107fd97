"""The recipe sections that describe one run: model, task, parametrization, optimizer, schedule, train, widths.

Each field is declared with :func:`hptransfer.recipe.spec_field` (its doc string, kind and bounds),
which drives validation, the reference page and the CLI help. Re-exported by :mod:`hptransfer.recipe`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from ._spec import spec_field

__all__ = [
    "DepthsSpec", "ModelSpec", "TaskSpec", "ParametrizationSpec", "OptimizerSpec", "ScheduleSpec", "TrainSpec",
    "WidthsSpec", "SearchParam", "TUNABLE", "SWEEPABLE", "DIVERGENCE_FACTOR", "SAMPLERS", "PRUNERS", "LAWS",
    "EXPECTATIONS", "Sampler", "Pruner", "Law", "Expectation", "OptimizerName",
]

#: Sampler names (``tune.sampler``). ``gp`` is the default: best measured for 1-4 log-scale
#: numeric HPs and ~100 trials (docs/tuning.md, scripts/bench_samplers.py).
Sampler = Literal["gp", "tpe", "random", "qmc"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)
#: Pruner names (``tune.pruner``).
Pruner = Literal["none", "median", "successive_halving", "hyperband"]
PRUNERS: tuple[str, ...] = get_args(Pruner)
#: Horizon/batch laws (``transfer.law``): opt-in, empirical, no μP theory (shared/RULES.md).
Law = Literal["none", "step_law", "deepseek"]
LAWS: tuple[str, ...] = get_args(Law)
#: What a parametrization is expected to do in the check: ``pass`` (gated), ``fail`` (gated: a
#: control that must be caught, e.g. SP in our own CI), ``any`` (reported only).
Expectation = Literal["pass", "fail", "any"]
EXPECTATIONS: tuple[str, ...] = get_args(Expectation)
#: Optimizer names a recipe may use (the classes: ``hptransfer.parametrization.OPTIMIZERS``).
OptimizerName = Literal["adamw", "adam", "sgd", "muon"]

#: A run diverges when its loss exceeds this multiple of its start (``train.divergence_factor``):
#: on the built-in tasks a healthy run never exceeds 1.5x its first loss, while diverging runs pass
#: 3x within a few steps. The one home of this default.
DIVERGENCE_FACTOR = 3.0

# Upper bounds: far above any real run, low enough that a typo (`1e30`, a stray digit) is an
# error naming the field instead of a run that never ends or a width that exhausts memory.
MAX_STEPS = 10_000_000  #: optimizer steps of one run
MAX_WIDTH = 1_048_576  #: a model width (2**20)
MAX_BATCH = 1_048_576  #: examples per step
MAX_TRIALS = 100_000  #: trials in one study
MAX_WORKERS = 1024  #: local worker processes
MAX_SEED = 2**32 - 1  #: torch and numpy accept 32-bit seeds everywhere

#: Hyperparameters the built-in training understands: name -> (section, field, legal low, legal high,
#: low exclusive). A recipe's ``search`` may use these names; custom training functions may use any.
TUNABLE: dict[str, tuple[str, str, float, float, bool]] = {
    "lr": ("optimizer", "lr", 0.0, float("inf"), True),
    "weight_decay": ("optimizer", "weight_decay", 0.0, float("inf"), False),
    "beta1": ("optimizer", "beta1", 0.0, 1.0, False),
    "beta2": ("optimizer", "beta2", 0.0, 1.0, False),
    "eps": ("optimizer", "eps", 0.0, float("inf"), True),
    "momentum": ("optimizer", "momentum", 0.0, 1.0, False),
    "muon_lr_ratio": ("optimizer", "muon_lr_ratio", 0.0, float("inf"), True),
    "init_std": ("parametrization", "init_std", 0.0, float("inf"), True),
    "output_mult": ("parametrization", "output_mult", 0.0, float("inf"), True),
    "attn_mult": ("parametrization", "attn_mult", 0.0, float("inf"), True),
    "warmup": ("schedule", "warmup", 0.0, 0.99, False),  # a fraction of the steps; 1 would never reach peak
    "min_lr_frac": ("schedule", "min_lr_frac", 0.0, 1.0, False),
}

#: HPs the check can sweep: the tunable ones that are strictly positive (grids are in log2). Each has
#: a grid field of the same name in :class:`CheckSpec` (tests/recipe/test_recipe.py keeps them in step).
SWEEPABLE: tuple[str, ...] = tuple(hp for hp, (_, _, low, _, excl) in TUNABLE.items() if low == 0.0 and excl)


#: The depth keyword of each built-in model (``mlp``'s ``depth`` counts its linear layers).
_DEPTH_ARGS: dict[str, str] = {"gpt": "n_layer", "mlp": "depth"}


@dataclass
class ModelSpec:
    """The model: a built-in factory or an import path to the user's own."""

    name: str | None = spec_field(None, kind="choice", choices=("mlp", "gpt", "cnn", "resglu"), optional=True,
                                  doc="Built-in model factory (`mlp`, `gpt`, `cnn`, `resglu`). Give `name`, "
                                      "`factory` or `hf`.")
    factory: Any = spec_field(None, kind="str", optional=True, objects=True,
                              doc="Import path `package.module:function` of your own factory; it must accept the "
                                  "width as keyword `width_arg`. From Python: the function itself (`width -> "
                                  "nn.Module`, or `(width, depth)`), called with the width as its first argument.")
    kwargs: dict = spec_field(kind="mapping", factory=dict,
                              doc="Extra keyword arguments for the factory (e.g. `n_layer: 2`). Built-in models "
                                  "also get the task's sizes (vocab, classes) unless set here.")
    width_arg: str = spec_field("width", kind="str", doc="Name of the factory's width argument. Default `width`.")
    depth_arg: str | None = spec_field(None, kind="str", optional=True,
                                       doc="Name of the factory's depth argument (number of blocks), used when the "
                                           "recipe has `depths`. Default: `n_layer` for `gpt`, `depth` otherwise.")
    hf: str | None = spec_field(None, kind="str", optional=True,
                                doc="A Hugging Face architecture (`model_type`: `llama`, `gpt2`, `mistral`, `qwen2`, "
                                    "`bert`, `vit`, ...) built from `config` with the `hf` extra. Give `name`, "
                                    "`factory` or `hf`.")
    config: dict = spec_field(kind="mapping", factory=dict,
                              doc="The Hugging Face config fields (for `hf`), e.g. `num_hidden_layers: 2`; the width "
                                  "field is set per run.")
    width_field: str | None = spec_field(None, kind="str", optional=True,
                                         doc="The config field holding the width (for `hf`; `a.b` for a sub-config's); "
                                             "FFN and head-dim fields follow it. Default: known for 36 architectures "
                                             "(`hf.WIDTH_FIELDS`: llama, gpt2, qwen, gemma, mixtral, dbrx, bert...), "
                                             "else the config's hidden size, with a warning naming the fields chosen.")
    hf_class: str | None = spec_field(None, kind="str", optional=True,
                                      doc="transformers auto class for `hf` (`AutoModelForCausalLM` by default; "
                                          "`AutoModelForMaskedLM` for encoders (bert, roberta...), "
                                          "`AutoModelForImageClassification` for vit).")

    @property
    def depth_argument(self) -> str:
        """The factory's depth keyword: ``depth_arg``, else the built-in model's, else ``depth``."""
        return self.depth_arg or _DEPTH_ARGS.get(self.name or "", "depth")

    @property
    def names_model(self) -> bool:
        """Whether a model to build is named (``name``, ``factory`` or ``hf``); else the user's loop builds it."""
        return self.name is not None or self.factory is not None or self.hf is not None

@dataclass
class TaskSpec:
    """What to train on: a built-in task or the user's own training function."""

    name: Any = spec_field(None, kind="choice", choices=("classification", "images", "charlm"),
                           optional=True, objects=True,
                           doc="Built-in task (`classification`, `images` (the same data as 3x8x8 images, for "
                               "`cnn`), `charlm`). From Python also a task object of your own (`batch(step, "
                               "batch_size, seed=)`, `loss`, `example_input`, as `hptransfer.tasks.Task`). Give "
                               "`name` or `train_fn`.")
    train_fn: Any = spec_field(
        None, kind="str", optional=True, objects=True,
        doc="Import path `package.module:function` of your own training function (from Python: the function), "
            "called as `fn(hp, *, width, seed, report, spec)` (it may leave out the keywords it does not need) "
            "and returning the final validation loss (float). `hp` holds the searched and fixed values and the "
            "fields of the sections the recipe writes; `spec` is the whole run spec. It must call "
            "`report(step, loss)` every step for divergence detection and pruning.")
    kwargs: dict = spec_field(kind="mapping", factory=dict,
                              doc="Keyword arguments of the built-in task (e.g. `block_size: 64`).")


@dataclass
class ParametrizationSpec:
    """How the model is rewritten across widths, and the default forward multipliers."""

    name: Any = spec_field("mup", kind="str", objects=True,
                           doc="Registered parametrization (`mup`, `sp`, `depth-mup`, `completep`). From Python also "
                               "a `Parametrization` instance. Default `mup`.")
    base_width: int | None = spec_field(None, kind="int", minimum=1, maximum=MAX_WIDTH, optional=True,
                                        doc="Width of the base shapes. Default: the (first) proxy width, so tuned "
                                            "values mean the same in SP and μP there.")
    zero_readout: bool = spec_field(False, kind="bool", doc="Zero-init the readout (TP5's advice). Default false.")
    zero_query: bool = spec_field(False, kind="bool", doc="Zero-init the attention query projection. Default false.")
    output_mult: float = spec_field(1.0, kind="float", minimum=0.0, exclusive_min=True,
                                    doc="Readout multiplier when not searched. Default 1.")
    attn_mult: float = spec_field(1.0, kind="float", minimum=0.0, exclusive_min=True,
                                  doc="Attention-logit multiplier when not searched. Default 1.")
    base_depth: int | None = spec_field(None, kind="int", minimum=1, optional=True,
                                        doc="Depth of the base model for `depth-mup`/`completep`. Default: the "
                                            "proxy depth (`depths.proxy`).")
    init_std: float | None = spec_field(None, kind="float", minimum=0.0, exclusive_min=True, optional=True,
                                        doc="Weight init std at the base width when not searched. Default null: "
                                            "keep the factory's own init.")
    gains: Literal["train", "freeze", "scaled"] = spec_field(
        "train", kind="choice", choices=("train", "freeze", "scaled"),
        doc="Norm gains and biases: `train` (default), `freeze` (non-parametric norms, the fix of Lingle 2024, "
            "arXiv:2404.05728) or `scaled` (trainable with LR x base_width / width).")
    options: dict = spec_field(kind="mapping", factory=dict,
                               doc="Further keyword arguments of `hptransfer.parametrize` (`readout`, `roles`, "
                                   "`branches`, `attention`, `probe_width`, `lr_form`, glob patterns for "
                                   "`zero_query`). Default none.")


@dataclass
class OptimizerSpec:
    """Optimizer family and the defaults of its hyperparameters."""

    name: Any = spec_field("adamw", kind="choice", choices=get_args(OptimizerName), objects=True,
                           doc="Optimizer: `adamw` (default), `adam`, `sgd` or `muon` (Muon on 2-D hidden matrices, "
                               "AdamW on the rest; each with its μP rule). From Python also a torch optimizer class "
                               "of a family hptransfer knows, built with the groups, `lr` and `kwargs` only.")
    lr: float = spec_field(1e-3, kind="float", minimum=0.0, exclusive_min=True,
                           doc="Base learning rate (at the base width) when not searched. Default 1e-3.")
    weight_decay: float = spec_field(0.0, kind="float", minimum=0.0,
                                     doc="Base weight decay when not searched. Default 0.")
    weight_decay_mode: Literal["coupled", "independent"] = spec_field(
                                        "coupled", kind="choice", choices=("coupled", "independent"),
                                        doc="`coupled` (lr*wd kept constant across widths) or `independent` "
                                            "(decay wd per step). Default coupled.")
    decay: Literal["all", "matrices"] = spec_field("all", kind="choice", choices=("all", "matrices"),
                            doc="Which tensors decay: `all` (default) or `matrices` (2+ dims only).")
    beta1: float = spec_field(0.9, kind="float", minimum=0.0, maximum=1.0, doc="Adam beta1. Default 0.9.")
    beta2: float = spec_field(0.999, kind="float", minimum=0.0, maximum=1.0, doc="Adam beta2. Default 0.999.")
    eps: float = spec_field(1e-8, kind="float", minimum=0.0, exclusive_min=True, doc="Adam epsilon. Default 1e-8.")
    momentum: float = spec_field(0.0, kind="float", minimum=0.0, maximum=1.0, doc="SGD momentum. Default 0.")
    muon_lr_ratio: float = spec_field(10.0, kind="float", minimum=0.0, exclusive_min=True,
                                      doc="`muon` only: Muon's base LR as a multiple of `lr` (AdamW's). Default 10 "
                                          "(Muon's usual 0.02 against AdamW's 0.002).")
    scale_eps: bool | None = spec_field(None, kind="bool", optional=True,
                                        doc="Shrink Adam's epsilon per group as the parametrization says (μP: "
                                            "1/m_d; CompleteP: 1/(m_d m_L^alpha)). Default null: on for "
                                            "`depth-mup`/`completep`, off otherwise.")
    grad_clip: float | None = spec_field(None, kind="float", minimum=0.0, exclusive_min=True, optional=True,
                                         doc="Clip the global gradient norm to this value. Default null (off).")
    kwargs: dict = spec_field(kind="mapping", factory=dict,
                              doc="Further keyword arguments of the optimizer class (e.g. `amsgrad: true`, "
                                  "`fused: true`). Default none.")


@dataclass
class ScheduleSpec:
    """Learning-rate schedule shape (a multiplier on every group's LR)."""

    warmup: float = spec_field(0.0, kind="float", minimum=0.0, maximum=0.99,
                               doc="Fraction of steps of linear warmup when not searched. Default 0.")
    decay: Literal["cosine", "linear", "constant"] = spec_field(
                                        "cosine", kind="choice", choices=("cosine", "linear", "constant"),
                            doc="Decay after warmup: `cosine` (default), `linear` or `constant`.")
    min_lr_frac: float = spec_field(0.1, kind="float", minimum=0.0, maximum=1.0,
                                    doc="LR at the last step as a fraction of the peak. Default 0.1.")


@dataclass
class TrainSpec:
    """Batch size, length and seeds of every training run (proxy trials and target run)."""

    batch_size: int | None = spec_field(None, kind="int", minimum=1, maximum=MAX_BATCH, optional=True,
                                        doc="Examples (sequences for LM tasks) per step. Required for a built-in "
                                            "task; with your own `train_fn`, what it uses (null: not known here, "
                                            "so no law can rescale the LR for a new batch size).")
    steps: int | None = spec_field(None, kind="int", minimum=1, maximum=MAX_STEPS, optional=True,
                                   doc="Optimizer steps per run. Required for a built-in task; with your own "
                                       "`train_fn`, how many it trains (null: not known here).")
    seeds: tuple = spec_field((0,), kind="ints", minimum=0, maximum=MAX_SEED,
                              doc="Training seeds; a trial's loss is the mean over them. Default [0].")
    divergence_factor: float = spec_field(DIVERGENCE_FACTOR, kind="float", minimum=1.0, exclusive_min=True,
                                          doc="A run diverges when its loss exceeds this multiple of its start "
                                              "(or goes non-finite). Default 3.")
    eval_every: int = spec_field(0, kind="int", minimum=0,
                                 doc="Record the validation loss every this many steps in the target run "
                                     "(0: a few points). Default 0.")


@dataclass
class WidthsSpec:
    """The widths: small proxy for tuning, large target for the transferred values."""

    proxy: tuple = spec_field(kind="ints", minimum=1, maximum=MAX_WIDTH,
                              doc="Proxy width (or list: a trial's loss is the mean over them). Required.")
    target: tuple | None = spec_field(None, kind="ints", minimum=1, maximum=MAX_WIDTH, optional=True,
                                      doc="Target width (or list of widths). Required by `run`, `transfer` (unless "
                                          "given there) and the default check widths.")


@dataclass
class DepthsSpec:
    """Proxy and target depths (number of blocks), for a scale-up that grows depth as well as width.

    Under `depth-mup`/`completep` residual branches and block learning rates are scaled relative to
    `parametrization.base_depth`; under `sp`/`mup` the model is only built at these depths.
    """

    proxy: int | None = spec_field(None, kind="int", minimum=1, optional=True,
                                   doc="Depth of the proxy (tuning) runs. Default null: the factory's own depth.")
    target: int | None = spec_field(None, kind="int", minimum=1, optional=True,
                                    doc="Depth of the target run. Default null: the factory's own depth.")


@dataclass
class SearchParam:
    """One dimension of the search space."""

    type: Literal["float", "log_float", "int", "categorical"] = spec_field(
        kind="choice", choices=("float", "log_float", "int", "categorical"),
                           doc="`float`, `log_float` (log-uniform), `int` or `categorical`.")
    low: float | None = spec_field(None, kind="float", optional=True, doc="Lower bound (numeric types).")
    high: float | None = spec_field(None, kind="float", optional=True, doc="Upper bound (numeric types).")
    step: float | None = spec_field(None, kind="float", minimum=0.0, exclusive_min=True, optional=True,
                                    doc="Grid step for `float`/`int` (optional).")
    choices: Any = spec_field(None, kind="any", optional=True,
                              doc="List of values for `categorical`.")
