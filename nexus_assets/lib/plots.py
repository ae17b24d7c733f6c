"""Plots of the gate's comparison, as figures the gate keeps in MLflow beside the challenger's run (Dagster has no
image type; its metadata links to them)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay


def confusion_matrices(y_true, predictions: dict[str, np.ndarray]) -> plt.Figure:
    """One confusion matrix per model, side by side."""
    fig, axes = plt.subplots(1, len(predictions), figsize=(4.2 * len(predictions), 3.8), squeeze=False)
    for ax, (title, predicted) in zip(axes[0], predictions.items(), strict=True):
        ConfusionMatrixDisplay.from_predictions(y_true, predicted, ax=ax, colorbar=False, cmap="Blues")
        ax.set_title(title)
    fig.tight_layout()
    return fig


def residuals(y_true, predictions: dict[str, np.ndarray]) -> plt.Figure:
    """Residual against prediction for each model."""
    fig, axes = plt.subplots(1, len(predictions), figsize=(4.2 * len(predictions), 3.8), squeeze=False)
    for ax, (title, predicted) in zip(axes[0], predictions.items(), strict=True):
        ax.scatter(predicted, np.asarray(y_true) - predicted, s=4, alpha=0.4)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set(title=title, xlabel="prediction", ylabel="residual")
    fig.tight_layout()
    return fig
