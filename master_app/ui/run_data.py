"""The Run page's data: an upload parsed once per content (shared by the sessions of this
master), previewed, and kept across a visit to another page."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import streamlit as st

from master_app.ui import jobs_api
from master_app.ui.formatting import error_markdown
from master_app.ui.resources import get_settings


@dataclass(frozen=True)
class LoadedData:
    """An uploaded file, parsed once (by its content's hash) with its summary."""

    key: str
    name: str
    dataset: Any
    summary: Any


def _load(content: bytes, name: str) -> LoadedData:
    """Parse an upload once per content (the hash is the key), with its summary."""
    return _parsed(hashlib.sha256(content).hexdigest(), name, content)


def _parse(digest: str, name: str, content: bytes) -> LoadedData:
    settings = get_settings()
    dataset = jobs_api.load_dataset(content, name, max_bytes=settings.max_upload_bytes,
                                    max_rows=settings.max_rows)
    return LoadedData(key=digest, name=name, dataset=dataset, summary=dataset.summary())


#: Parsed uploads shared by the sessions of this master, by content hash (a few of them).
_parsed: Callable[[str, str, bytes], LoadedData] = st.cache_resource(
    max_entries=4, show_spinner="Reading the file...",
    hash_funcs={bytes: lambda _content: None})(_parse)


def upload_ui() -> LoadedData | None:
    """File upload (CSV, TXT, JSONL) with a preview; returns the loaded data or None.

    The data outlives a visit to another page: back here the file box is empty (Streamlit
    forgets files it does not draw) but the data is still the one loaded, said so, with a
    button to drop it.
    """
    returning = "run_upload" not in st.session_state  # the box was not drawn last run
    upload = st.file_uploader(
        "Data (CSV, TXT one item a line, or JSONL)", type=["csv", "txt", "jsonl", "ndjson"],
        key="run_upload",
        help="The rows the task works on. A CSV needs a header row; the text column is "
        "picked for you and can be changed in the plan.",
    )
    had_file = st.session_state.get("_run_upload_had", False) and not returning
    st.session_state["_run_upload_had"] = upload is not None
    if upload is None:
        if had_file:  # the person removed the file from the box
            st.session_state.pop("run_dataset", None)
            return None
        loaded: LoadedData | None = st.session_state.get("run_dataset")
        if loaded is None:
            return None
        cols = st.columns([3, 1])
        cols[0].caption(f"{loaded.name}: {len(loaded.dataset):,} rows, columns "
                        f"{', '.join(loaded.dataset.columns)} (loaded before; upload another "
                        "file to replace it)")
        if cols[1].button("Remove data", key="run_forget_data"):
            st.session_state.pop("run_dataset", None)
            st.rerun()
        return loaded
    file_key = (upload.name, upload.size, getattr(upload, "file_id", None))
    loaded = st.session_state.get("run_dataset")
    if loaded is None or st.session_state.get("_run_upload_key") != file_key:
        try:
            loaded = _load(upload.getvalue(), upload.name)
        except jobs_api.DataError as exc:
            st.error(error_markdown(f"Cannot use {upload.name}: {exc}"))
            st.session_state.pop("run_dataset", None)
            return None
        st.session_state["run_dataset"] = loaded
        st.session_state["_run_upload_key"] = file_key
    st.caption(f"{loaded.name}: {len(loaded.dataset):,} rows, columns "
               f"{', '.join(loaded.dataset.columns)}")
    st.dataframe(loaded.dataset.frame.head(20), hide_index=True, height=220)
    return loaded
