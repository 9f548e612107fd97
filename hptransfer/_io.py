"""Atomic file writes (text and figures): results are never left half-written by a crash or a full disk.

Also the one place that creates matplotlib figures (:func:`new_figure`) and that hides secrets
(URL passwords, password-like parameters) before text is printed or written (:func:`redact`).

Files are written with the mode the user's umask gives a new file (``0o666 & ~umask``), not the
0600 of a temporary file, so a CI artifact step running as another user can read them. Only the
file's own folder is created, and only when the folder above it exists: a mistyped path fails
with ``FileNotFoundError`` instead of creating folders elsewhere.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["new_figure", "save_figure", "write_text_atomic", "redact", "redact_url", "make_parent", "user_frame",
           "user_code_frame"]


#: ``scheme://user:password@`` (the password runs to the last ``@`` before a ``/`` or a space, so an
#: unescaped ``@`` in it is hidden too) and ``scheme://user@`` (a token when the scheme is not a database's).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s:/@'\"]*)"
                       r"(?::(?P<password>[^\s/'\"]*))?@(?=[^\s@]*(?:[/\s'\"]|$))")
#: ``password=...`` and its kin, in a query string, a libpq ``key=value`` DSN or a sentence.
_SECRET_PARAM = re.compile(r"(?i)(?P<key>\b(?:password|passwd|pwd|sslpassword|passfile|token|access_token|auth_token"
                           r"|api_key|apikey|secret|client_secret)=)[^&;\s'\"]*")
_DATABASE_SCHEMES = ("postgres", "mysql", "mariadb", "sqlite", "oracle", "mssql", "cockroach", "journal")


def redact(text: str) -> str:
    """``text`` safe to print or store: every secret in it becomes ``***``.

    Hidden: the password of any ``scheme://user:password@host`` (whatever the scheme, a mistyped
    one included), a bare ``scheme://token@host`` userinfo unless the scheme is a database's (where
    it is a user name), and the value of every ``password=``, ``sslpassword=``, ``passfile=``,
    ``token=``, ``api_key=``, ``secret=`` ... parameter. ``postgresql://user:s3cret@h/db?sslpassword=x``
    becomes ``postgresql://user:***@h/db?sslpassword=***``. Pass passwords through ``PGPASSWORD`` or
    ``~/.pgpass`` to keep them out of URLs altogether.
    """
    def userinfo(m: re.Match[str]) -> str:
        if m["password"] is not None:
            return f"{m['scheme']}{m['user']}:***@"
        database = m["scheme"].lower().startswith(_DATABASE_SCHEMES)
        return m[0] if database or not m["user"] else f"{m['scheme']}***@"

    return _SECRET_PARAM.sub(lambda m: m["key"] + "***", _USERINFO.sub(userinfo, text))


class _Redact(logging.Filter):
    """Hides secrets in every record of the ``hptransfer`` logger, whoever's handler prints it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


# Installed here, not in errors.py (a leaf module): every module that logs imports this one on the way.
logging.getLogger("hptransfer").addFilter(_Redact())


def redact_url(url: str) -> str:
    """A storage URL safe to print or store (:func:`redact`); journal URLs, plain paths and
    ``"inmemory"`` come back unchanged."""
    return redact(url)


def make_parent(path: Path) -> None:
    """Create ``path``'s folder if missing, but only that one level (its parent must exist).

    Raises ``FileNotFoundError`` (naming the missing folder) otherwise, and ``NotADirectoryError``
    when something on the way is a file.
    """
    parent = path.parent
    if parent.is_dir():
        return
    if not parent.parent.is_dir():
        raise FileNotFoundError(2, "folder does not exist (only the last folder of an output path is created)",
                                str(parent.parent))
    parent.mkdir(exist_ok=True)


def _umask_mode() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; restore at once
    os.umask(mask)
    return 0o666 & ~mask


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` via a temporary file in the same folder and a rename.

    A reader sees either the old file or the whole new one; the file's folder is created if its
    parent exists (:func:`make_parent`); the mode follows the umask.
    """
    path = Path(path)
    make_parent(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _umask_mode())  # mkstemp makes 0600; a new file gets what the umask allows
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def new_figure(what: str, error: type[Exception], **figure_kwargs: Any) -> Figure:
    """A new matplotlib ``Figure`` drawn by the Agg (PNG) canvas, made without pyplot.

    hptransfer only writes figures to files, so it never goes through pyplot: no backend is
    selected or switched (a notebook keeps its inline/widget backend, a desktop its GUI one), no
    window can open, and the figure is not held in pyplot's global registry (nothing to close,
    no state shared between threads). Add axes with ``fig.subplots(...)``; write it with
    :func:`save_figure`.

    Args:
        what: what needs the figure, for the error message (e.g. ``"CoordCheckResult.plot"``).
        error: the exception class raised when matplotlib is missing (the caller's own
            :class:`~hptransfer.errors.HPTransferError` subclass; this module imports nothing of
            the package).
        figure_kwargs: passed to ``matplotlib.figure.Figure`` (``figsize`` in inches, ...).

    Raises:
        error: matplotlib is not installed, with the fix.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise error(f"{what} needs matplotlib. Fix: pip install 'hptransfer[plot]'.") from None
    fig = Figure(**figure_kwargs)
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas
    return fig


def save_figure(fig: Any, path: str | Path, *, dpi: int = 110, tight: bool = True) -> Path:
    """Lay out, save as PNG atomically (temporary file + rename) and release a matplotlib figure.

    ``dpi`` is dots per inch (default 110). ``tight`` (default True) applies ``tight_layout``
    first; pass False for a figure laid out already (a colorbar that stole space from its axes
    breaks ``tight_layout``); its bounding box is then trimmed at save time instead. A figure
    made by pyplot (Optuna's plots are) is closed so pyplot frees it and a notebook does not
    display it again; a :func:`new_figure` needs no closing.
    """
    path = Path(path)
    make_parent(path)
    if tight:
        fig.tight_layout()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.fchmod(fd, _umask_mode())
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches=None if tight else "tight")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt = sys.modules.get("matplotlib.pyplot")  # only pyplot can hold the figure; never import it here
        if plt is not None:
            plt.close(fig)
    return path


def user_frame(exc: BaseException) -> str:
    """``(in file.py:line, function)`` of the innermost traceback frame of ``exc`` outside torch and
    hptransfer: where in the user's model an error came from, to name it without a traceback."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    skip = (f"{os.sep}torch{os.sep}", f"{os.sep}hptransfer{os.sep}")
    mine = [f for f in frames if not any(k in f.filename for k in skip)]
    if not mine:
        return ""
    f = mine[-1]
    return f"(in {os.path.basename(f.filename)}:{f.lineno}, {f.name})"


def user_code_frame(exc: BaseException) -> str | None:
    """``file:line in function`` of the innermost traceback frame outside hptransfer, torch,
    installed packages and the standard library; ``None`` when every frame is ours or a library's
    (a bug there, whose traceback is the report)."""
    import traceback

    import torch  # already loaded by whatever raised

    ours = (Path(__file__).resolve().parent, Path(torch.__file__).resolve().parent, Path(os.__file__).resolve().parent)
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith("<frozen "):  # the standard library's frozen modules (codecs, importlib)
            continue
        path = Path(frame.filename).resolve()
        if not any(path.is_relative_to(root) for root in ours) and "site-packages" not in path.parts:
            found = f"{frame.filename}:{frame.lineno} in {frame.name}"
    return found
