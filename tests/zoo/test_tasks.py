"""Built-in tasks: determinism, splits, errors, and that the reference models learn them."""

from __future__ import annotations

import math
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from hptransfer.errors import DataError, HPTransferError
from hptransfer.models import gpt, mlp
from hptransfer.tasks import (
    STDLIB_FILES,
    TASKS,
    CharLMTask,
    ClassificationTask,
    ImageClassificationTask,
    Task,
    get_task,
)


@pytest.fixture(scope="module")
def cls_task() -> ClassificationTask:
    return ClassificationTask()


@pytest.fixture(scope="module")
def lm_task() -> CharLMTask:
    return CharLMTask()


@pytest.fixture(params=["classification", "charlm"])
def task(request: pytest.FixtureRequest, cls_task, lm_task) -> Task:
    return {"classification": cls_task, "charlm": lm_task}[request.param]


def _equal(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_batches_are_deterministic(task: Task) -> None:
    a = task.batch(5, 8)
    assert _equal(a, task.batch(5, 8))
    # A fresh instance (as in another worker process) gives the same data.
    assert _equal(a, type(task)().batch(5, 8))
    assert not _equal(a, task.batch(6, 8))
    assert not _equal(a, task.batch(5, 8, seed=1))
    assert not _equal(a, task.batch(5, 8, split="val"))
    assert all(t.device.type == "cpu" for t in a)


def test_train_and_val_data_differ(cls_task: ClassificationTask, lm_task: CharLMTask) -> None:
    data = cls_task._data()
    assert data["train_x"].shape == (8192, 32) and data["val_x"].shape == (2048, 32)
    train_rows = {tuple(r.tolist()) for r in data["train_x"][:256]}
    assert not any(tuple(r.tolist()) in train_rows for r in data["val_x"])
    # Labels use every class and none dominates.
    counts = torch.bincount(data["train_y"], minlength=10)
    assert counts.min() > 0.03 * 8192 and counts.max() < 0.3 * 8192
    # LM: val is the tail of the corpus, about 10% of it.
    n_train, n_val = lm_task.n_train_bytes, lm_task.n_val_bytes
    assert n_val == pytest.approx(0.1 * (n_train + n_val), abs=1)


def test_classification_shapes(cls_task: ClassificationTask) -> None:
    x, y = cls_task.batch(0, 16)
    assert x.shape == (16, 32) and x.dtype == torch.float32
    assert y.shape == (16,) and y.dtype == torch.int64
    assert int(y.max()) < 10
    assert cls_task.example_input(3).shape == (3, 32)
    assert cls_task.model_kwargs() == {"d_in": 32, "n_classes": 10}
    assert cls_task.init_loss_bound == pytest.approx(math.log(10))


def test_charlm_windows_and_metadata(lm_task: CharLMTask) -> None:
    x, y = lm_task.batch(3, 4)
    assert x.shape == y.shape == (4, 64)
    assert x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are inputs shifted by one byte
    assert lm_task._data()["train"].dtype == torch.uint8
    fp = lm_task.data_fingerprint
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert lm_task.model_kwargs() == {"vocab_size": 256, "block_size": 64}
    assert lm_task.init_loss_bound == pytest.approx(math.log(256))
    ex = lm_task.example_input()
    assert ex.shape == (2, 64) and ex.dtype == torch.int64
    with torch.device("meta"):
        out = gpt(32, **lm_task.model_kwargs())(ex.to("meta"))
    assert out.shape == (2, 64, 256)


def test_charlm_small_corpus_and_pickle() -> None:
    task = CharLMTask(block_size=16, n_bytes=20_000)
    assert task.n_train_bytes + task.n_val_bytes == 20_000
    assert task.data_fingerprint != CharLMTask().data_fingerprint
    # The cached corpus is not pickled; the copy rebuilds identical data.
    clone = pickle.loads(pickle.dumps(task))
    assert clone._cache is None
    assert _equal(clone.batch(1, 2), task.batch(1, 2))


def test_charlm_missing_file_names_it(tmp_path: Path) -> None:
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for rel in STDLIB_FILES[1:]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stdlib / rel, tmp_path / rel)
    task = CharLMTask(source_dir=str(tmp_path))
    with pytest.raises(DataError, match=STDLIB_FILES[0]):
        task.batch(0, 1)


def test_eval_loss_restores_mode_and_is_deterministic(cls_task: ClassificationTask) -> None:
    torch.manual_seed(0)
    model = mlp(32).train()
    a = cls_task.eval_loss(model)
    assert model.training
    model.eval()
    assert cls_task.eval_loss(model) == a
    assert not model.training
    assert abs(a - cls_task.init_loss_bound) < 0.5


@pytest.mark.parametrize(
    ("call", "arg"),
    [
        (lambda t: t.batch(-1, 4), "step"),
        (lambda t: t.batch(0, 0), "batch_size"),
        (lambda t: t.batch(0, 4, split="test"), "split"),
        (lambda t: ClassificationTask(n_classes=1), "n_classes"),
        (lambda t: ClassificationTask(noise=1.5), "noise"),
        (lambda t: CharLMTask(val_fraction=0.0), "val_fraction"),
        (lambda t: CharLMTask(block_size=100, n_bytes=150).batch(0, 1), "n_bytes"),
    ],
)
def test_bad_arguments_raise_data_error(cls_task, call, arg: str) -> None:
    with pytest.raises(DataError, match=arg):
        call(cls_task)


def test_registry() -> None:
    assert dict(TASKS) == {"classification": ClassificationTask, "images": ImageClassificationTask,
                           "charlm": CharLMTask}
    assert get_task("classification", n_classes=5).n_classes == 5
    with pytest.raises(DataError, match="charlm, classification, images"):
        get_task("mnist")
    with pytest.raises(DataError, match="block_size"):
        get_task("charlm", blocksize=32)
    assert issubclass(DataError, HPTransferError)


def test_image_view_of_the_classification_data() -> None:
    images, flat = get_task("images"), ClassificationTask(d_in=3 * 8 * 8)
    x, y = images.batch(3, 16)
    assert x.shape == (16, 3, 8, 8) and y.shape == (16,)
    # the same examples and labels as the flat task with d_in = 3*8*8, only laid out as images
    assert torch.equal(images._data()["train_x"], flat._data()["train_x"])
    assert torch.equal(images._data()["val_y"], flat._data()["val_y"])
    assert images.model_kwargs() == {"in_channels": 3, "n_classes": 10, "image_size": 8}


def _train(model: torch.nn.Module, task: Task, steps: int, batch_size: int) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(steps):
        x, y = task.batch(step, batch_size)
        loss = task.loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_mlp_learns_classification(cls_task: ClassificationTask) -> None:
    # Measured (torch seeds 0-3): 2.30 -> 1.11-1.14 nats, i.e. ~50% below ln 10 = 2.30.
    torch.manual_seed(0)
    model = mlp(64, **cls_task.model_kwargs())
    before = cls_task.eval_loss(model)
    _train(model, cls_task, steps=150, batch_size=128)
    after = cls_task.eval_loss(model)
    assert before > 0.9 * cls_task.init_loss_bound
    assert after < 0.65 * cls_task.init_loss_bound, (before, after)


def test_gpt_learns_charlm(lm_task: CharLMTask) -> None:
    # Measured (torch seeds 0-3): 5.6-5.8 -> 3.16-3.20 nats, ~42% below ln 256 = 5.55.
    torch.manual_seed(0)
    model = gpt(32, n_layer=1, **lm_task.model_kwargs())
    before = lm_task.eval_loss(model)
    _train(model, lm_task, steps=100, batch_size=16)
    after = lm_task.eval_loss(model)
    assert before > 0.9 * lm_task.init_loss_bound
    assert after < 0.7 * lm_task.init_loss_bound, (before, after)


def test_task_loss_takes_logits_from_model_output_objects() -> None:
    from types import SimpleNamespace

    from hptransfer.errors import TrainingError
    from hptransfer.zoo._task_base import as_logits

    logits, target = torch.randn(2, 5, 256), torch.randint(0, 256, (2, 5))
    task = get_task("charlm", block_size=5, n_bytes=10_000)
    ref = task.loss(logits, target)
    for output in (SimpleNamespace(logits=logits), {"logits": logits}, (logits, None)):
        assert torch.equal(task.loss(output, target), ref)
    with pytest.raises(TrainingError, match="holds no logits"):
        as_logits(SimpleNamespace(loss=1.0))
    x, y = task.batch(0, 4)
    assert y.is_contiguous() and x.is_contiguous()  # nanoGPT-style models call targets.view(-1)
