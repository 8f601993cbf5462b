"""Ensembles of existing SWE-bench submissions: loading, and what selection among them could reach."""

from .load import (
    EnsembleMember,
    Labels,
    LabelStatus,
    PredictionSet,
    labels_from_data,
    load_labels,
    load_predictions,
    load_submission,
)
from .report import EnsembleReport, InstanceRow, MemberSummary, ensemble_report, instance_universe
from .table import instance_table, report_table, table_text

__all__ = [
    "EnsembleMember",
    "EnsembleReport",
    "InstanceRow",
    "LabelStatus",
    "Labels",
    "MemberSummary",
    "PredictionSet",
    "ensemble_report",
    "instance_table",
    "instance_universe",
    "labels_from_data",
    "load_labels",
    "load_predictions",
    "load_submission",
    "report_table",
    "table_text",
]
