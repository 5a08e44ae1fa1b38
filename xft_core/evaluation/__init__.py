"""Evaluation: the one prediction loop, the cross-lingual transfer matrix, its reports and plots."""

from xft_core.evaluation.calibration import CALIBRATION, Calibration, Estimated, calibrate
from xft_core.evaluation.matrix import BASE_LABEL, DEFINITIONS, PER_LANGUAGE_LABEL, MatrixRow, TransferMatrix
from xft_core.evaluation.plots import training_curves, transfer_heatmap
from xft_core.evaluation.predict import average, predict_rows, score, with_language
from xft_core.evaluation.reports import markdown, print_table, write_reports
from xft_core.evaluation.runner import Evaluation, default_report_folder, evaluate, transfer_matrix

__all__ = ["BASE_LABEL", "CALIBRATION", "DEFINITIONS", "PER_LANGUAGE_LABEL", "Calibration", "Estimated", "Evaluation",
           "MatrixRow", "TransferMatrix", "average", "calibrate", "default_report_folder", "evaluate", "markdown",
           "predict_rows", "print_table", "score", "training_curves", "transfer_heatmap", "transfer_matrix", "with_language",
           "write_reports"]
