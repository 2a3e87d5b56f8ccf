"""Where a study lives: an embedded journal file in the search folder by default, a database URL, or
Optuna's gRPC storage proxy (`grpc://host:port`) so workers on many machines share one study.

A storage that cannot be opened is a ConfigError at start, naming the URL (password hidden) and the fix.
"""
from __future__ import annotations

import os
import re
import socket
import warnings
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from vaelab.core.errors import ConfigError

JOURNAL_NAME = "study.journal"
STORAGE_NOTE = "storage.txt"  # the URL of an external storage, so `search-report DIR` finds it
HEARTBEAT_S = 30


def redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)


def open_storage(url: str | None, folder: Path) -> BaseStorage:
    """The journal file `folder/study.journal` when `url` is None, else the database or gRPC proxy at `url`."""
    if url is None or url.startswith("journal:") or url.endswith(".journal"):
        path = Path(url.removeprefix("journal:")) if url else Path(folder) / JOURNAL_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as e:
            raise ConfigError(f"--storage {path}: cannot open the journal file: {e}") from None
    if url.startswith("grpc://"):
        return _grpc(url)
    if re.match(r"^(sqlite|postgresql|mysql|mariadb|oracle|mssql)(\+\w+)?://", url):
        try:
            # a heartbeat lets any worker fail the trials of a worker that died, on any machine
            with warnings.catch_warnings():  # heartbeat is marked experimental in Optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=4 * HEARTBEAT_S)
        except Exception as e:  # noqa: BLE001 - sqlalchemy/driver errors of many kinds, all mean "unreachable"
            raise ConfigError(f"--storage {redact(url)}: cannot open the database: {type(e).__name__}: {_first_line(e)}. "
                              "Check host, port, credentials and that its driver (psycopg2, pymysql) is installed") from None
    raise ConfigError(f"--storage {redact(url)}: unknown kind of storage; use a database URL (postgresql://..., mysql://..., "
                      "sqlite:///file.db), grpc://host:port for Optuna's storage proxy, or a path ending in .journal")


def _grpc(url: str) -> BaseStorage:
    m = re.match(r"^grpc://([^:/]+):(\d+)/?$", url)
    if not m:
        raise ConfigError(f"--storage {url}: expected grpc://host:port")
    try:
        import grpc  # noqa: F401
    except ImportError:
        raise ConfigError(f"--storage {url}: Optuna's gRPC storage proxy needs the grpcio package, which is not installed; "
                          "`pip install grpcio protobuf`, or use a database URL") from None
    from optuna.storages import GrpcStorageProxy

    proxy = GrpcStorageProxy(host=m.group(1), port=int(m.group(2)))
    try:
        proxy.wait_server_ready(timeout=10)
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"--storage {url}: no gRPC storage proxy answers there ({_first_line(e)}); start one with "
                          "optuna.storages.run_grpc_proxy_server(storage, host=..., port=...)") from None
    return proxy


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0][:300]


# ------------------------------------------------------------------ trials of dead workers
def owner_attrs() -> dict[str, object]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_trials(study: optuna.Study, storage: BaseStorage) -> list[int]:
    """Mark FAIL (reason, `stale` attr) the running trials whose worker on this host has died; numbers returned.

    Trials of other hosts are left to the database heartbeat (RDB storage) since their processes cannot be seen here.
    """
    if isinstance(storage, RDBStorage):
        optuna.storages.fail_stale_trials(study)
    failed = []
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if t.user_attrs.get("host") != host or pid is None or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, "fail_reason", f"worker pid {pid} on {host} died during the trial")
            storage.set_trial_user_attr(t._trial_id, "stale", True)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            failed.append(t.number)
        except RuntimeError:  # another worker got there first
            pass
    return failed
