"""The live view's pure parts: the subtask grid as one image, counts, the ETA."""

from __future__ import annotations

import numpy as np

from master_app.ui.live_view import (
    IMAGE_WIDTH,
    PALETTE,
    eta_text,
    grid_shape,
    legend,
    state_counts,
    state_image,
)
from master_app.ui.run_state import STATES


def test_each_subtask_is_one_cell_coloured_by_its_state() -> None:
    codes = bytes([STATES.index(s) for s in ("done", "failed", "running", "cancelled")])
    image = state_image(codes)
    columns, rows, cell = grid_shape(4)
    assert (columns, rows) == (4, 1)
    assert image.shape == (cell + 1, 4 * (cell + 1), 3)
    for i, state in enumerate(("done", "failed", "running", "cancelled")):
        pixel = image[0, i * (cell + 1)]
        assert tuple(pixel) == tuple(PALETTE[STATES.index(state)])


def test_thousands_of_subtasks_stay_one_small_image() -> None:
    codes = (np.arange(20_000) % len(STATES)).astype(np.uint8).tobytes()
    image = state_image(codes)
    assert image.shape[1] <= IMAGE_WIDTH and image.shape[0] <= 260
    columns, rows, _cell = grid_shape(20_000)
    assert columns * rows >= 20_000
    counts = state_counts(codes)
    assert sum(counts.values()) == 20_000 and counts["done"] == 20_000 // len(STATES)


def test_eta_and_legend_read_at_a_glance() -> None:
    assert eta_text(None) == "—" and eta_text(42.4) == "42s" and eta_text(125) == "2m 05s"
    assert eta_text(7200) == "2.0h"
    text = legend({"pending": 0, "running": 2, "done": 5, "failed": 0, "retrying": 0,
                   "cancelled": 3})
    assert "running 2" in text and "done 5" in text and "cancelled 3" in text
    assert "failed" not in text  # states with no subtask are left out
