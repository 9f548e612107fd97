"""``hptransfer run`` / ``tune`` / ``transfer`` on PostgreSQL with a password: it appears nowhere.

Needs the server ``.ci/run`` starts (HPT_TEST_POSTGRES_URL); skips without it. The test makes a
role with a password; with the CI server's trust authentication the password is not checked, but
it travels through every path a URL takes (recipe, study attributes, reports, messages).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from _helpers import write_tiny

URL = os.environ.get("HPT_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not URL, reason="HPT_TEST_POSTGRES_URL not set (no PostgreSQL server)")
ROOT = Path(__file__).resolve().parents[2]


def _sql(url: str, *statements: str) -> list[tuple]:
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    rows: list[tuple] = []
    with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database, password=u.password,
                         autocommit=True) as conn:
        for s in statements:
            cur = conn.execute(s)
            if cur.description:
                rows += cur.fetchall()
    return rows


def _cli(*args: str, cwd: Path | None = None, **env_vars: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env_vars}
    return subprocess.run([sys.executable, "-m", "hptransfer", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


@pytest.mark.slow  # subprocesses and real trials: ~20-40 s
def test_password_is_in_no_file_output_message_or_database_row(tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    secret = "Pw" + uuid.uuid4().hex[:16]
    role, db = f"hpt_{uuid.uuid4().hex[:8]}", f"hptdb_{uuid.uuid4().hex[:8]}"
    _sql(URL, f"CREATE ROLE {role} LOGIN PASSWORD '{secret}'", f"CREATE DATABASE {db} OWNER {role}")
    try:
        # sslpassword (a client key's passphrase) rides in the query string, as libpq allows
        url = make_url(URL).set(username=role, password=secret, database=db).update_query_dict(
            {"sslpassword": secret}).render_as_string(hide_password=False)
        recipe = write_tiny(tmp_path, tune={"trials": 3, "sampler": "random", "storage": url},
                            train={"batch_size": 32, "steps": 15})
        (tmp_path / "env").mkdir()
        from_env = write_tiny(tmp_path / "env", tune={"trials": 3, "sampler": "random",
                                                      "storage": "${HPT_TEST_SECRET_URL}"},
                              train={"batch_size": 32, "steps": 15})
        out, out_env = tmp_path / "run", tmp_path / "env" / "run"
        procs = [
            _cli("transfer", str(recipe), "--out", str(out), "-q"),  # no study yet: an error naming the storage
            _cli("tune", str(recipe), "--out", str(out), "-q"),
            _cli("run", str(recipe), "--out", str(out), "-q"),
            _cli("run", str(from_env), "--out", str(out_env), "-q", HPT_TEST_SECRET_URL=url),
            _cli("run", str(recipe), "--out", str(out), "--storage", url),  # run has no --storage: argparse's echo
            _cli("tune", str(recipe), "--out", str(out), "--storage",
                 url.replace("postgresql", "postgresq")),  # a mistyped scheme
        ]
        assert [p.returncode for p in procs][:2] == [2, 0], procs[0].stderr + procs[1].stderr
        assert procs[2].returncode in (0, 1) and procs[3].returncode in (0, 1), procs[2].stderr + procs[3].stderr
        assert procs[4].returncode == 2 and procs[5].returncode == 2, procs[4].stderr + procs[5].stderr
        assert "no study named" in procs[0].stderr and "***" in procs[0].stderr
        assert yaml.safe_load((out_env / "recipe.yaml").read_text())["tune"]["storage"] == "${HPT_TEST_SECRET_URL}"
        written = [p for p in [*out.rglob("*"), *out_env.rglob("*")] if p.is_file()]
        assert {"summary.md", "best.yaml", "target.yaml", "recipe.yaml"} <= {p.name for p in written}
        leaks = [p.name for p in written if secret.encode() in p.read_bytes()]
        leaks += [f"{' '.join(p.args[3:5])} {stream}" for p in procs for stream in ("stdout", "stderr")
                  if secret in getattr(p, stream)]
        tables = _sql(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        assert tables, "the study wrote no table"
        dump = "".join(str(r) for (t,) in tables for r in _sql(url, f"SELECT t::text FROM {t} t"))
        if secret in dump:
            leaks.append("database")
        assert leaks == []
        assert yaml.safe_load((out / "recipe.yaml").read_text())["tune"]["storage"].count("***") == 2
    finally:
        _sql(URL, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", f"DROP ROLE IF EXISTS {role}")
