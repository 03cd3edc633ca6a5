"""What lasts: a study's store (SQLite records and host state, orbax checkpoints of device
state) in one directory. Written once per tick by the study's process; read by ``load_study``
and anything else, while the study runs or after it ended or was killed."""

from hyperjax.store.sqlite import (
    FILE,
    StoreLocked,
    StudyStore,
    check_directory,
    connect,
    exists,
    load_meta,
    read_final_state,
    read_meta,
    read_snapshot,
    writer_alive,
)

__all__ = ["FILE", "StoreLocked", "StudyStore", "check_directory", "connect", "exists", "load_meta", "read_final_state", "read_meta",
           "read_snapshot",
           "writer_alive"]
