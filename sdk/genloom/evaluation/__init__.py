"""Evaluation of trained models: ``genloom eval`` and :func:`evaluate_model`."""

from genloom.evaluation.images import SetComparison
from genloom.evaluation.report import EvalReport, evaluate_model

__all__ = ["EvalReport", "SetComparison", "evaluate_model"]
