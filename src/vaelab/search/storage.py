"""Where a study lives: an embedded journal file in the search folder by default, a database URL, or
Optuna's gRPC storage proxy (`grpc://host:port`) so workers on many machines share one study.

A storage that cannot be opened is a ConfigError at start, naming the URL (password hidden) and the fix.
Only Optuna's public API is used (`RDBStorage`, `JournalStorage`, `record_heartbeat`, `fail_stale_trials`).
"""
from __future__ import annotations

import importlib.util
import inspect
import os
import random
import re
import socket
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.trial import TrialState

from vaelab.core.errors import ConfigError

JOURNAL_NAME = "study.journal"
STORAGE_NOTE = "storage.txt"  # the external storage's URL with its password masked: a note for people, never read back
HOST_ENV = "VAELAB_HOST_ID"  # overrides the host name a worker records (containers that share a host name)

# scheme -> (SQLAlchemy drivers in order of preference as (driver, module, pip package), extra that installs the first)
DRIVERS: dict[str, tuple[tuple[tuple[str, str, str], ...], str]] = {
    "postgresql": ((("psycopg", "psycopg", "psycopg[binary]"), ("psycopg2", "psycopg2", "psycopg2-binary"),
                    ("pg8000", "pg8000", "pg8000")), "postgres"),
    "mysql": ((("pymysql", "pymysql", "pymysql"), ("mysqldb", "MySQLdb", "mysqlclient"),
               ("mysqlconnector", "mysql.connector", "mysql-connector-python")), "mysql"),
}
DRIVERS["postgres"] = DRIVERS["postgresql"]
DRIVERS["mariadb"] = DRIVERS["mysql"]


@dataclass(frozen=True)
class Heartbeat:
    """Seconds between a running trial's heartbeats, and without one before any worker fails the trial."""

    interval: int = 30
    grace: int = 120


def redact(url: str) -> str:
    """The URL with any password replaced by ***."""
    url = re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)


def host_id() -> str:
    return os.environ.get(HOST_ENV) or socket.gethostname()


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is absent
        return False


def with_driver(url: str) -> str:
    """`postgresql://` / `mysql://` with the installed driver spelled out, so SQLAlchemy never guesses one that is
    absent (SQLAlchemy 2.1 resolves `postgresql://` to psycopg 3, `mysql://` to mysqlclient)."""
    m = re.match(r"^(\w+)(\+(\w+))?://", url)
    if not m or m.group(1) not in DRIVERS:
        return url
    scheme, driver = m.group(1), m.group(3)
    options, extra = DRIVERS[scheme]
    target = "postgresql" if scheme == "postgres" else scheme  # SQLAlchemy knows only `postgresql`
    rest = url.split("://", 1)[1]
    if driver is not None:
        known = {d: (mod, pkg) for d, mod, pkg in options}
        if driver in known and not _installed(known[driver][0]):
            raise ConfigError(f"--storage {redact(url)}: the driver {driver!r} is not installed; `pip install "
                              f"{known[driver][1]}`, or `pip install \"vaelab[{extra}]\"` and write {scheme}://...")
        return f"{target}+{driver}://{rest}"
    for d, mod, _ in options:
        if _installed(mod):
            return f"{target}+{d}://{rest}"
    raise ConfigError(f"--storage {redact(url)}: no {scheme} driver is installed; `pip install \"vaelab[{extra}]\"` "
                      f"(installs {options[0][2]}, used by {scheme}://...), or `pip install {options[1][2]}` and write "
                      f"{scheme}+{options[1][0]}://...")


def open_storage(url: str | None, folder: Path, heartbeat: Heartbeat = Heartbeat(),
                 on_stale: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None) -> BaseStorage:
    """The journal file `folder/study.journal` when `url` is None, else the journal, database or gRPC proxy at `url`.

    `on_stale(study, trial)` runs once for each trial a database heartbeat check fails (to queue its genes again).
    """
    if url is None or url.startswith("journal:") or url.endswith(".journal"):
        return _journal(Path(url.removeprefix("journal:")) if url else Path(folder) / JOURNAL_NAME, own=url is None)
    if url.startswith("grpc://"):
        return _grpc(url)
    if re.match(r"^(sqlite|postgresql|postgres|mysql|mariadb|oracle|mssql)(\+\w+)?://", url):
        return _rdb(with_driver(url), heartbeat, on_stale)
    raise ConfigError(f"--storage {redact(url)}: unknown kind of storage; use a database URL (postgresql://..., mysql://..., "
                      "sqlite:///file.db), grpc://host:port for Optuna's storage proxy, or a path ending in .journal")


def _journal(path: Path, own: bool) -> BaseStorage:
    from optuna.storages.journal import JournalFileBackend

    if own and path.is_symlink():  # the folder's own journal must not lead elsewhere
        raise ConfigError(f"{path} is a symbolic link; the search folder's journal must be a plain file. Remove the link, "
                          f"or give the other storage with --storage")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    except OSError as e:
        raise ConfigError(f"--storage {path}: cannot open the journal file: {e}") from None


def _rdb(url: str, heartbeat: Heartbeat, on_stale) -> RDBStorage:
    """RDBStorage with heartbeats, retrying the schema creation that workers started together race on."""
    import sqlalchemy.exc

    kwargs: dict = {"heartbeat_interval": heartbeat.interval, "grace_period": heartbeat.grace}
    if on_stale is not None:  # renamed in Optuna 4.9: pass it under the name this Optuna knows
        params = inspect.signature(RDBStorage).parameters
        kwargs["heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in params else "failed_trial_callback"] = on_stale
    for attempt in range(8):
        try:
            with warnings.catch_warnings():  # heartbeat arguments are marked experimental in Optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                warnings.simplefilter("ignore", FutureWarning)
                return RDBStorage(url, **kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as e:
            # two workers creating the tables at once: one loses with a duplicate type/table; the tables exist now
            if attempt == 7 or not re.search(r"duplicate|already exists|unique", str(e), re.I):
                raise ConfigError(f"--storage {redact(url)}: cannot create the study tables: {_first_line(e)}") from None
            time.sleep(0.2 + random.random() * 0.5 * (attempt + 1))
        except Exception as e:  # noqa: BLE001 - sqlalchemy/driver errors of many kinds, all mean "unreachable"
            raise ConfigError(f"--storage {redact(url)}: cannot open the database: {type(e).__name__}: {redact(_first_line(e))}. "
                              "Check the host, port, database name and credentials") from None
    raise AssertionError("unreachable")


def _grpc(url: str) -> BaseStorage:
    m = re.match(r"^grpc://([^:/]+):(\d+)/?$", url)
    if not m:
        raise ConfigError(f"--storage {url}: expected grpc://host:port")
    if not _installed("grpc"):
        raise ConfigError(f"--storage {url}: Optuna's gRPC storage proxy needs the grpcio package, which is not installed; "
                          "`pip install grpcio protobuf`, or use a database URL")
    proxy_cls = getattr(optuna.storages, "GrpcStorageProxy", None)
    if proxy_cls is None:
        raise ConfigError(f"--storage {url}: Optuna {optuna.__version__} has no gRPC storage proxy (it came in Optuna 4.2); "
                          "`pip install -U optuna`, or use a database URL")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        proxy = proxy_cls(host=m.group(1), port=int(m.group(2)))
    try:
        proxy.wait_server_ready(timeout=10)
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"--storage {url}: no gRPC storage proxy answers there ({_first_line(e)}); start one with "
                          "optuna.storages.run_grpc_proxy_server(storage, host=..., port=...)") from None
    return proxy


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0][:300]


# ------------------------------------------------------------------ heartbeats and trials of dead workers
def heartbeat_enabled(storage: BaseStorage) -> bool:
    return isinstance(storage, RDBStorage) and bool(storage.get_heartbeat_interval())


class HeartbeatThread:
    """Records a running trial's heartbeat every interval from a thread, as `study.optimize` does for its trials:
    vaelab uses ask/tell, where Optuna records none. A no-op for storages without heartbeats."""

    def __init__(self, storage: BaseStorage, study: optuna.Study, trial_number: int):
        self.storage, self._stop = storage, threading.Event()
        self._thread: threading.Thread | None = None
        if heartbeat_enabled(storage):
            study_id = storage.get_study_id_from_name(study.study_name)
            self.trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial_number)

    def __enter__(self) -> "HeartbeatThread":
        if heartbeat_enabled(self.storage):
            self.storage.record_heartbeat(self.trial_id)
            self._thread = threading.Thread(target=self._beat, daemon=True, name="vaelab-heartbeat")
            self._thread.start()
        return self

    def _beat(self) -> None:
        interval = self.storage.get_heartbeat_interval()
        while not self._stop.wait(interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # noqa: BLE001 - a lost connection: the next beat retries; the grace period covers gaps
                pass

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def owner_attrs() -> dict[str, object]:
    return {"host": host_id(), "pid": os.getpid()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_trials(study: optuna.Study, storage: BaseStorage,
                     on_stale: Callable[[optuna.Study, optuna.trial.FrozenTrial], None]) -> list[int]:
    """Fail the running trials whose worker died. On a database every worker's heartbeat tells (any host):
    Optuna fails those and runs the storage's stale callback; elsewhere, a trial of this host whose process is
    gone is failed here and handed to `on_stale`. Returns the numbers failed here."""
    if heartbeat_enabled(storage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    failed = []
    host = host_id()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if t.user_attrs.get("host") != host or pid is None or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        study_id = storage.get_study_id_from_name(study.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            storage.set_trial_user_attr(trial_id, "fail_reason", f"worker pid {pid} on {host} died during the trial")
            if storage.set_trial_state_values(trial_id, TrialState.FAIL):
                failed.append(t.number)
                on_stale(study, storage.get_trial(trial_id))
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker got there first
            pass
    return failed
