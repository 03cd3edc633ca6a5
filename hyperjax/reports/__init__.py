"""Study reports: interactive figures (plotly) for notebooks and loggers, and
``report(store_dir)``, which writes ``report.html`` plus one PNG per figure (matplotlib).

Every figure function takes a store directory, a ``StudyResult`` or a loaded ``StudyData``
(:func:`load`, to read a store once for several figures) and returns a plotly ``go.Figure``;
one that does not apply to the study raises :class:`NotApplicable` (a ``ValueError``).

- :func:`optimization_history`: best-so-far final score against time and env steps.
- :func:`learning_curves`: every trial's curve, coloured by status, evictions marked.
- :func:`exploration`: the policy's entropy in every trial's phases.
- :func:`parallel_coordinates`: hyperparameters and scores (log and categorical axes).
- :func:`importance`: Sobol indices from the BNN surrogate, else from a regression on the trials.
- :func:`slot_timeline`: which trial held which slot when.
- :func:`pbt_lineage`: PBT exploit lineages (PBT studies).
- :func:`surrogate_fit`: the BNN's predictions against the observations (BNN studies).
- :func:`figures`: all that apply, by name; :func:`report`: the HTML report and PNGs.
"""

from hyperjax.reports.build import figures, report
from hyperjax.reports.interactive import (
    exploration,
    importance,
    learning_curves,
    optimization_history,
    parallel_coordinates,
    pbt_lineage,
    slot_timeline,
    surrogate_fit,
)
from hyperjax.reports.source import NotApplicable, StudyData, load

__all__ = [
    "NotApplicable",
    "StudyData",
    "exploration",
    "figures",
    "importance",
    "learning_curves",
    "load",
    "optimization_history",
    "parallel_coordinates",
    "pbt_lineage",
    "report",
    "slot_timeline",
    "surrogate_fit",
]
