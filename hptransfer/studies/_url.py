"""``tune.storage`` as written in a recipe -> the URL a study is opened with.

A plain path is a journal file (made absolute, so that workers in other folders agree); ``${VAR}``
is taken from the environment, so that a URL with a password can stay out of the recipe.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .._io import redact
from ..errors import StorageError

__all__ = ["storage_url", "expand_env"]

_RDB_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite")

#: ``${NAME}`` only: a bare ``$`` may be part of a password.
_ENV_REF = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(storage: str) -> str:
    """``tune.storage`` with each ``${VAR}`` taken from the environment (so that a password can live in a
    variable, not in the recipe). An unset variable is refused, never kept as a file name."""
    def value(m: re.Match[str]) -> str:
        name = m["name"]
        if name not in os.environ:
            raise StorageError(f"tune.storage names environment variable {name} (in {redact(storage)!r}), which is "
                               f"not set. Fix: export {name}=... in the shell and in every worker's job, or write the "
                               "URL out (password via PGPASSWORD or ~/.pgpass).")
        return os.environ[name]

    return _ENV_REF.sub(value, storage)


def storage_url(storage: str | None, run_dir: str | Path) -> str:
    """Normalize a recipe's ``tune.storage`` into a URL: default ``journal:///<run_dir>/study.journal``.

    A plain path (no ``scheme://``) is a journal file; relative paths are made absolute so that
    worker processes agree whatever their working directory. ``${VAR}`` is expanded from the
    environment (:func:`expand_env`).
    """
    if storage is None:
        return "journal://" + str((Path(run_dir) / "study.journal").resolve())
    storage = expand_env(storage)
    if "://" not in storage:
        return "journal://" + str(Path(storage).expanduser().resolve())
    scheme = storage.split("://", 1)[0].split("+", 1)[0]
    if scheme == "journal":
        path = storage[len("journal://"):]
        return "journal://" + str(Path(path).expanduser().resolve())
    if scheme not in _RDB_SCHEMES:
        raise StorageError(
            f"tune.storage: unknown storage scheme {scheme!r} in {redact(storage)!r}. Fix: use a file path (journal, "
            "the default), journal:///abs/path, or postgresql://user@host/db (password via PGPASSWORD or ~/.pgpass)."
        )
    return storage


