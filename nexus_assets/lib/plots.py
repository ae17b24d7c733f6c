"""Plots for the Dagster UI, embedded in Markdown metadata as base64 PNG (Dagster has no image type)."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay


def confusion_matrices(y_true, predictions: dict[str, np.ndarray]) -> str:
    """One confusion matrix per model, side by side, as a Markdown image."""
    fig, axes = plt.subplots(1, len(predictions), figsize=(4.2 * len(predictions), 3.8), squeeze=False)
    for ax, (title, predicted) in zip(axes[0], predictions.items(), strict=True):
        ConfusionMatrixDisplay.from_predictions(y_true, predicted, ax=ax, colorbar=False, cmap="Blues")
        ax.set_title(title)
    return _markdown_image(fig, "confusion matrices")


def residuals(y_true, predictions: dict[str, np.ndarray]) -> str:
    """Residual against prediction for each model, as a Markdown image."""
    fig, axes = plt.subplots(1, len(predictions), figsize=(4.2 * len(predictions), 3.8), squeeze=False)
    for ax, (title, predicted) in zip(axes[0], predictions.items(), strict=True):
        ax.scatter(predicted, np.asarray(y_true) - predicted, s=4, alpha=0.4)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set(title=title, xlabel="prediction", ylabel="residual")
    return _markdown_image(fig, "residuals")


def _markdown_image(fig: plt.Figure, alt: str) -> str:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return f"![{alt}](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"
