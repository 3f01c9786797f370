"""The live view of a running task that stays readable at thousands of subtasks.

One picture, not thousands of widgets: every subtask is a small cell coloured by its state
(:data:`~master_app.ui.run_state.STATES`), drawn as a single image from the one byte per
subtask that :meth:`~master_app.ui.run_state.BackgroundRun.snapshot` copies. Beside it:
the counts (done, failed, cancelled), elapsed time and an ETA, and one row per worker with
what it holds, what it finished and its throughput.

:func:`state_image` and :func:`eta_text` are pure (tested without Streamlit).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from master_app.ui.run_state import STATES, RunSnapshot

#: RGB of each state, in :data:`STATES` order; readable on light and dark backgrounds.
PALETTE = np.array([
    (173, 181, 189),  # pending: grey
    (51, 154, 240),  # running: blue
    (55, 178, 77),  # done: green
    (240, 62, 62),  # failed: red
    (174, 62, 201),  # retrying: violet
    (247, 103, 7),  # cancelled: orange
], dtype=np.uint8)
#: Streamlit's coloured-text names for the legend, in :data:`STATES` order.
LEGEND_COLOURS = ("gray", "blue", "green", "red", "violet", "orange")
#: The image is at most this wide (pixels); cells shrink (to 2 px) to fit big tasks.
IMAGE_WIDTH = 720
GAP = 1


def grid_shape(count: int, width: int = IMAGE_WIDTH) -> tuple[int, int, int]:
    """``(columns, rows, cell_px)`` of a grid of ``count`` cells at most ``width`` wide."""
    count = max(count, 1)
    for cell in (18, 12, 8, 6, 4, 3, 2):
        columns = max(1, width // (cell + GAP))
        rows = math.ceil(count / columns)
        if rows * (cell + GAP) <= 240 or cell == 2:
            return min(columns, count), rows, cell
    raise AssertionError("unreachable")


def state_image(codes: bytes, width: int = IMAGE_WIDTH) -> np.ndarray:
    """The cells of ``codes`` (one state code per subtask, in order, left to right and
    top to bottom) as an RGB image; the cells after the last subtask are left blank."""
    count = len(codes)
    columns, rows, cell = grid_shape(count, width)
    states = np.frombuffer(codes, dtype=np.uint8) if count else np.zeros(0, np.uint8)
    states = np.minimum(states, len(PALETTE) - 1)
    padded = np.full(columns * rows, 255, dtype=np.int16)  # 255: no subtask there
    padded[:count] = states
    colours = np.full((rows * columns, 3), 255, dtype=np.uint8)
    present = padded != 255
    colours[present] = PALETTE[padded[present]]
    tile = cell + GAP
    image = np.full((rows * tile, columns * tile, 3), 255, dtype=np.uint8)
    blocks = colours.reshape(rows, columns, 3)
    big = np.repeat(np.repeat(blocks, tile, axis=0), tile, axis=1)
    mask = np.zeros((tile, tile), dtype=bool)
    mask[:cell, :cell] = True
    full_mask = np.tile(mask, (rows, columns))
    image[full_mask] = big[full_mask]
    return image


def state_counts(codes: bytes) -> dict[str, int]:
    """How many subtasks are in each state."""
    counts = np.bincount(np.frombuffer(codes, dtype=np.uint8), minlength=len(STATES))
    return {state: int(counts[i]) for i, state in enumerate(STATES)}


def eta_text(eta_s: float | None) -> str:
    """An ETA in words short enough for a metric (``"—"`` when unknown)."""
    if eta_s is None or not math.isfinite(eta_s):
        return "—"
    if eta_s < 60:
        return f"{eta_s:.0f}s"
    if eta_s < 3600:
        return f"{eta_s // 60:.0f}m {eta_s % 60:02.0f}s"
    return f"{eta_s / 3600:.1f}h"


def legend(counts: dict[str, int]) -> str:
    """The legend under the grid, with each state's count."""
    return " · ".join(f":{colour}[■] {state} {counts[state]:,}"
                      for state, colour in zip(STATES, LEGEND_COLOURS, strict=True)
                      if counts[state] or state in ("running", "done"))


def live_ui(snap: RunSnapshot[Any]) -> None:
    """Progress bar, counts, ETA, the subtask grid and the per-worker lanes."""
    label = f"{snap.done:,} of {snap.total:,} subtasks done"
    if snap.failed:
        label += f", {snap.failed:,} failed"
    if snap.cancelled:
        label += f", {snap.cancelled:,} cancelled"
    st.progress(snap.fraction, text=label)
    cols = st.columns(5)
    cols[0].metric("Done", f"{snap.done:,}")
    cols[1].metric("Failed so far" if snap.running else "Failed", f"{snap.failed:,}")
    cols[2].metric("Cancelled", f"{snap.cancelled:,}")
    cols[3].metric("Elapsed", f"{snap.elapsed_s:.1f}s")
    cols[4].metric("ETA", eta_text(snap.eta_s) if snap.running else "—")
    if snap.codes:
        st.image(state_image(snap.codes), caption="Each cell is one subtask, in order",
                 output_format="PNG")
        st.markdown(legend(state_counts(snap.codes)))
    if snap.lane_rows:
        st.markdown("**Workers**")
        st.dataframe(pd.DataFrame(snap.lane_rows), hide_index=True,
                     column_config={"per second": st.column_config.NumberColumn(
                         "per second", help="Subtasks this worker completed per second",
                         format="%.2f")})
