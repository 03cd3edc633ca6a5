"""Studies: trials flowing through population slots, decided by a policy, fed by a proposer,
persisted by a store.

``tune`` runs one (``resume`` continues one from its store); ``load_study`` reads one back from
its store, finished, killed or running; ``StudyResult`` is what all three return.
"""

from hyperjax.study.records import StudyResult, Trial
from hyperjax.study.tune import load_study, resume, tune

__all__ = ["StudyResult", "Trial", "load_study", "resume", "tune"]
