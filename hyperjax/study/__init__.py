"""Studies: trials flowing through population slots, decided by a scheduler, fed by a proposer.

``tune`` is the entry point; ``StudyResult`` what it returns; ``load_trials`` reads a study's
JSON-lines trial log back.
"""

from hyperjax.study.records import StudyResult, Trial, load_trials
from hyperjax.study.tune import tune

__all__ = ["StudyResult", "Trial", "load_trials", "tune"]
