"""Ride out a database server that restarts or drops connections for a short while.

A PostgreSQL restart (``pg_ctl restart``, a failover, a network blip) breaks every open connection.
Optuna's storage calls then raise, and each worker would end with exit 3 although the server is
back a second later. :func:`retrying` wraps the storage's methods so that a call that fails on a
lost connection is retried with growing pauses (0.5 s doubling to 8 s) for up to ``seconds``
(recipe ``tune.reconnect``, default :data:`RECONNECT_SECONDS`); the engine's ``pool_pre_ping``
(set by :func:`~hptransfer.studies._storage.open_storage`) replaces the dead pooled connections.
Past the limit the error propagates as before (one line, exit 3). A write whose commit reached the
server just before the connection broke may be sent twice; Optuna's writes of trial values and
states are idempotent, and a duplicated new trial is failed as stale like any trial without a worker.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from ..errors import warn

__all__ = ["retrying", "RECONNECT_SECONDS"]

#: Default of ``tune.reconnect``: how long a worker keeps retrying a lost database connection.
RECONNECT_SECONDS = 60

#: The storage methods Optuna calls: BaseStorage's, BaseHeartbeat's, and the private ones its cache
#: layer (``optuna.storages._cached_storage``) calls on the database storage directly.
_METHODS = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
    "get_study_name_from_id", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
    "get_all_studies", "create_new_trial", "set_trial_param", "get_trial_id_from_study_id_trial_number",
    "get_trial_number_from_id", "get_trial_param", "set_trial_state_values", "set_trial_intermediate_value",
    "set_trial_user_attr", "set_trial_system_attr", "get_trial", "get_all_trials", "get_n_trials",
    "get_best_trial", "get_trial_user_attrs", "get_trial_system_attrs", "record_heartbeat",
    "get_heartbeat_interval", "get_heartbeat_stale_trial_callback", "get_failed_trial_callback",
    "_get_stale_trial_ids", "_create_new_trial", "_get_trials", "_set_trial_param", "_get_best_trial_id",
)


def retrying(storage: Any, where: str, seconds: float) -> Any:
    """Wrap ``storage``'s methods (in place, on the instance) to retry lost connections for ``seconds``."""
    from ._storage import connection_lost  # the storage module imports this one

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            delay, deadline = 0.5, time.monotonic() + seconds
            while True:
                try:
                    return fn(*args, **kwargs)
                except Exception as exc:
                    if connection_lost(exc) is None or time.monotonic() + delay > deadline:
                        raise
                    warn(f"lost the connection to {where}; retrying for up to {seconds:g} s (tune.reconnect).",
                         key=f"reconnect-{where}")
                    time.sleep(delay)
                    delay = min(2 * delay, 8.0)
        return call

    for name in _METHODS:
        fn = getattr(storage, name, None)
        if callable(fn):
            setattr(storage, name, wrap(fn))
    return storage
