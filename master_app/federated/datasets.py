"""Labelled data sets for training: a CSV (text or numeric columns) or the digits demo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nexus_common.protocol import TrainData


@dataclass(frozen=True)
class LabelledData:
    """Inputs with integer labels, and the label names behind the integers."""

    data: TrainData
    label_names: list[str]

    @property
    def is_text(self) -> bool:
        """True when the inputs are texts."""
        return self.data.texts is not None

    def subset(self, rows: list[int]) -> TrainData:
        """The given rows."""
        from master_app.federated.rounds import shard_data

        return shard_data(self.data, rows)


def load_csv(path: str | Path, label_column: str, text_column: str | None = None) -> LabelledData:
    """A labelled CSV: texts from ``text_column`` (or the only other text column), or every
    other column as numeric features when they are all numbers."""
    import pandas as pd

    frame = pd.read_csv(path)
    if label_column not in frame.columns:
        raise ValueError(f"{path} has no column {label_column!r}; columns are "
                         f"{list(frame.columns)}")
    frame = frame.dropna(subset=[label_column])
    names = sorted(str(v) for v in frame[label_column].unique())
    if len(names) < 2:
        raise ValueError(f"column {label_column!r} needs at least 2 distinct labels")
    index = {n: i for i, n in enumerate(names)}
    labels = [index[str(v)] for v in frame[label_column]]
    others = [c for c in frame.columns if c != label_column]
    if text_column is None:
        texty = [c for c in others if not pd.api.types.is_numeric_dtype(frame[c])]
        if len(texty) == 1:
            text_column = texty[0]
        elif texty:
            raise ValueError(f"several text columns {texty}: pick one with --text-column")
    if text_column is not None:
        texts = [str(t) for t in frame[text_column].fillna("")]
        return LabelledData(TrainData(texts=texts, labels=labels), names)
    features = frame[others].astype(float).values.tolist()
    return LabelledData(TrainData(features=features, labels=labels), names)


def load_digits_data() -> LabelledData:
    """scikit-learn's bundled 8x8 digits (no download), features scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return LabelledData(TrainData(features=(digits.data / 16.0).tolist(),
                                  labels=[int(v) for v in digits.target]),
                        [str(i) for i in range(10)])
