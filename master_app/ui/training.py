"""The Training page: federated training over the live workers, charts, Deploy.

Pick a labelled CSV (or an example), the label column, rounds, strategy and codec; the
rounds (``master_app.federated.session``) run in the background through the same
:class:`~master_app.ui.run_state.BackgroundRun` machinery as the Run page, never in the
script thread: a fragment polls the run for a progress bar, live loss / accuracy charts
and Cancel. The last result stays in the session with its per-round table, bytes on the
wire, and a Deploy button that publishes a text head to the workers.

Session state keys: ``training_run`` (the background run's id, the prepared job and the
list of round reports the run appends to), ``training_result`` (the finished run),
``training_deploy`` (the id of the last Deploy, which runs in the background too).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from database.models import WorkerNode, WorkerStatus
from database.store import Store, StoreError
from master_app.events import EventKind, ProgressEvent
from master_app.federated.datasets import LabelledData, load_csv, load_digits_data
from master_app.ui.resources import get_runs, get_settings, get_store
from worker_node.protocol import ModelFamily, WeightCodec

if TYPE_CHECKING:  # torch comes with these: imported when the page trains
    from master_app.federated.rounds import RoundReport, TrainingResult
    from master_app.federated.session import Prepared, TrainRequest

logger = logging.getLogger(__name__)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DIGITS = "digits demo (scikit-learn, numeric)"
RESULT_KEY = "training_result"
RUN_KEY = "training_run"
DEPLOY_KEY = "training_deploy"
POLL_S = 0.5


def report_frame(reports: list[RoundReport]) -> pd.DataFrame:
    """One row per round: loss, accuracy, who was merged, bytes."""
    return pd.DataFrame([{"round": r.round, "train loss": r.train_loss,
                          "held-out accuracy": r.accuracy, "merged": len(r.merged),
                          "failed": len(r.failed), "dropped": r.dropped,
                          "KiB sent": r.bytes_down / 1024, "KiB received": r.bytes_up / 1024,
                          "seconds": round(r.duration_s, 2),
                          "workers that left": ", ".join(r.left)} for r in reports])


def _live_workers(store: Store) -> list[WorkerNode]:
    live = store.list_workers([WorkerStatus.ACTIVE, WorkerStatus.BUSY])
    return [w for w in live if not w.capabilities or "train" in w.capabilities]


def data_ui() -> LabelledData | None:
    """Choose the data: an upload, an example CSV, or the digits demo."""
    examples = sorted(p.name for p in EXAMPLES.glob("*labelled*.csv"))
    source = st.radio("Data", ["Upload a CSV", *examples, DIGITS], horizontal=True,
                      key="train_source")
    if source == DIGITS:
        return load_digits_data()
    if source == "Upload a CSV":
        upload = st.file_uploader("Labelled CSV", type=["csv"], key="train_upload")
        if upload is None:
            return None
        # A temp copy for the CSV reader, removed at once (the page reruns on every click).
        with tempfile.TemporaryDirectory(prefix="nadg-train-upload-") as tmp:
            path = Path(tmp) / (Path(upload.name).name or "upload.csv")
            path.write_bytes(upload.getvalue())
            return _labelled_csv(path, upload.name)
    return _labelled_csv(EXAMPLES / source, source)


def _labelled_csv(path: Path, name: str) -> LabelledData | None:
    """The label column picker and the loaded CSV, or None with the reason shown."""
    try:
        columns = list(pd.read_csv(path, nrows=5).columns)
    except (OSError, ValueError) as exc:  # pandas' parser and decoding errors are ValueErrors
        st.error(f"Cannot read {name} as a CSV: {exc}")
        return None
    default = columns.index("label") if "label" in columns else len(columns) - 1
    label = st.selectbox("Label column", columns, index=default, key="train_label")
    try:
        return load_csv(path, str(label))
    except (OSError, ValueError) as exc:
        st.error(f"Cannot train on {name}: {str(exc).replace(str(path), name)}")
        return None


def options_ui() -> TrainRequest:
    """Rounds, strategy, codec and sharding."""
    from master_app.federated.session import TrainRequest

    cols = st.columns(4)
    rounds = int(cols[0].number_input("Rounds", 1, 200, 10, key="train_rounds"))
    strategy = str(cols[1].selectbox("Strategy", ["fedavg", "diloco"], key="train_strategy"))
    codec = WeightCodec(cols[2].selectbox("Weights on the wire", [c.value for c in WeightCodec],
                                          key="train_codec"))
    skew = cols[3].checkbox("Non-IID shards", key="train_skew",
                            help="label-skewed shards, Dirichlet(0.5)")
    return TrainRequest(rounds=rounds, strategy=strategy, codec=codec,
                        non_iid_alpha=0.5 if skew else None)


class TrainingCancelled(Exception):
    """The person pressed Cancel: the rounds stopped (checkpoints of finished rounds stay)."""


def training_job(prepared: Prepared, urls: list[str], token: str | None, checkpoint_dir: Path,
                 reports: list[RoundReport]) -> Any:
    """The background job (a ``run_state`` factory): all rounds, one progress event each.

    Every finished round is appended to ``reports`` (read by the page while it runs) and
    reported as a ``completed`` progress event, so the run's fraction is rounds done.
    Cancel stops the rounds and ends the run with :class:`TrainingCancelled`.
    """
    from master_app.federated.session import train

    total = prepared.config.rounds

    async def job(on_event: Callable[[ProgressEvent], None],
                  cancel: asyncio.Event) -> TrainingResult:
        def on_round(report: RoundReport) -> None:
            reports.append(report)
            on_event(ProgressEvent(kind=EventKind.COMPLETED, subtask_id=f"round {report.round}",
                                   idx=report.round, done=len(reports), total=total))

        training = asyncio.ensure_future(train(prepared, urls, token, checkpoint_dir, on_round))
        stop = asyncio.ensure_future(cancel.wait())
        try:
            await asyncio.wait({training, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not training.done():
                training.cancel()
            await asyncio.gather(training, stop, return_exceptions=True)
        if training.cancelled():
            raise TrainingCancelled(f"cancelled after {len(reports)} of {total} rounds")
        return training.result()

    return job


def start_training(prepared: Prepared, workers: list[WorkerNode], token: str | None) -> str:
    """Start the rounds in the background; remembers the run in the session; returns its id."""
    run_id = f"train-{uuid.uuid4().hex[:12]}"
    reports: list[RoundReport] = []
    ckpt = Path(tempfile.mkdtemp(prefix="nadg-train-ui-"))
    factory = training_job(prepared, [w.vm_url for w in workers], token, ckpt, reports)
    get_runs().start(run_id, prepared.config.rounds, factory)
    st.session_state[RUN_KEY] = {"id": run_id, "prepared": prepared, "reports": reports,
                                 "checkpoints": ckpt}
    st.session_state.pop(RESULT_KEY, None)
    st.session_state.pop(DEPLOY_KEY, None)
    return run_id


def _progress_ui(reports: list[RoundReport], total: int) -> None:
    """Progress bar and live charts of the rounds so far."""
    seen = list(reports)  # the background run appends to the list: copy it once
    last = seen[-1] if seen else None
    text = (f"round {last.round} of {total}: accuracy {last.accuracy or 0:.3f}"
            if last else "starting...")
    st.progress(min(1.0, len(seen) / total) if total else 0.0, text=text)
    if seen:
        st.line_chart(report_frame(seen).set_index("round")[["train loss",
                                                             "held-out accuracy"]])


def _live_training_ui() -> None:
    """Polls the background run; when it ends, reruns the page to show the result."""
    info = st.session_state.get(RUN_KEY)
    run = get_runs().get(info["id"]) if info else None
    if info is None or run is None:
        return
    snap = run.snapshot()
    _progress_ui(info["reports"], info["prepared"].config.rounds)
    if st.button("Cancel", key="train_cancel", disabled=snap.cancelling):
        run.cancel()
        st.warning("Cancelling: the round in progress is abandoned.")
    if not snap.running:
        st.rerun()


#: Reruns on its own every ``POLL_S`` seconds while a training run is going.
live_training_ui: Callable[[], None] = st.fragment(run_every=POLL_S)(_live_training_ui)


def finished_training_ui() -> None:
    """Keep a finished run's outcome in the session (or show why it stopped)."""
    info = st.session_state.get(RUN_KEY)
    run = get_runs().get(info["id"]) if info else None
    if info is None or run is None or run.running:
        return
    snap = run.snapshot()
    if snap.outcome is not None:
        st.session_state[RESULT_KEY] = (snap.outcome, info["prepared"])
    elif snap.error and snap.error.startswith(TrainingCancelled.__name__):
        st.warning(f"Training {snap.error.split(': ', 1)[-1]}.")
    elif snap.error:
        st.error(f"Training stopped: {snap.error}")


def results_ui(store: Store, workers: list[WorkerNode]) -> None:
    """The last run: charts, table, bytes, Deploy."""
    saved = st.session_state.get(RESULT_KEY)
    if not saved:
        return
    result, prepared = saved
    frame = report_frame(result.reports)
    st.subheader("Last training run")
    last = result.reports[-1]
    cols = st.columns(3)
    cols[0].metric("Held-out accuracy", f"{last.accuracy or 0:.3f}")
    cols[1].metric("Rounds", len(result.reports))
    wire_mib = frame[["KiB sent", "KiB received"]].sum().sum() / 1024
    cols[2].metric("MiB on the wire", f"{wire_mib:.2f}")
    st.line_chart(frame.set_index("round")[["train loss", "held-out accuracy"]])
    st.bar_chart(frame.set_index("round")[["KiB sent", "KiB received"]])
    st.dataframe(frame, hide_index=True)
    if prepared.config.spec.family is not ModelFamily.TEXT_HEAD:
        st.caption("Deploy publishes text heads (classify); this model stays in its checkpoints.")
        return
    deploying = _deploy_run()
    busy = deploying is not None and deploying.running
    if st.button("Deploy to workers", key="train_deploy", disabled=not workers or busy):
        start_deploy(store, workers, result, prepared)
        st.rerun()
    if busy:
        live_deploy_ui()
    else:
        deploy_outcome_ui()


def _deploy_run() -> Any:
    """This session's last deployment run, if any."""
    run_id = st.session_state.get(DEPLOY_KEY)
    return get_runs().get(run_id) if run_id else None


def start_deploy(store: Store, workers: list[WorkerNode], result: Any,
                 prepared: Prepared) -> str:
    """Publish the head to ``workers`` in the background (like training); returns the run id."""
    import httpx

    from master_app.federated.deploy import Deployment, deploy_head
    from master_app.worker_client import WorkerClient

    token = get_settings().auth_token
    models_dir = Path(".nadg").resolve() / "models"

    async def job(on_event: Callable[[ProgressEvent], None],
                  cancel: asyncio.Event) -> Deployment:
        async with httpx.AsyncClient() as http:
            return await deploy_head(store, WorkerClient(http, token), workers, result.weights,
                                     prepared.label_names, models_dir=models_dir,
                                     metrics={"accuracy": result.reports[-1].accuracy})

    run_id = f"deploy-{uuid.uuid4().hex[:12]}"
    get_runs().start(run_id, len(workers), job)
    st.session_state[DEPLOY_KEY] = run_id
    return run_id


def _live_deploy_ui() -> None:
    """Polls the deployment; reruns the page when it is done."""
    run = _deploy_run()
    if run is None:
        return
    st.info("Publishing the head to the workers...")
    if not run.snapshot().running:
        st.rerun()


#: Reruns on its own every ``POLL_S`` seconds while a deployment is going.
live_deploy_ui: Callable[[], None] = st.fragment(run_every=POLL_S)(_live_deploy_ui)


def deploy_outcome_ui() -> None:
    """Where the last deployment went (or why it did not)."""
    run = _deploy_run()
    if run is None or run.running:
        return
    snap = run.snapshot()
    if snap.error or snap.outcome is None:
        st.error(f"Not deployed: {snap.error}")
        return
    deployment = snap.outcome
    if deployment.deployed:
        st.success(f"Model {deployment.model.id} is on workers {deployment.deployed}; "
                   f"classify with head ref {deployment.model.id!r}.")
    else:
        st.error(f"Model {deployment.model.id} is registered but no worker took it (reasons "
                 "below): check the workers on the Workers page and deploy again.")
    for worker_id, error in deployment.failed.items():
        st.warning(f"Worker {worker_id}: {error}")


def training_page() -> None:
    """The whole Training page."""
    st.title("Training")
    st.caption("Federated training: each worker trains on its shard, the master merges "
               "the updates round by round (FedAvg or DiLoCo).")
    try:
        store = get_store()
        workers = _live_workers(store)
    except StoreError as exc:
        st.error(f"The registry is unavailable: {exc}")
        return
    if not workers:
        st.warning("No live workers can train: add one on the Workers page.")
    data = data_ui()
    request = options_ui()
    info = st.session_state.get(RUN_KEY)
    run = get_runs().get(info["id"]) if info else None
    active = run is not None and run.running
    if data is not None and workers and st.button(
            "Train", type="primary", key="train_go", disabled=active,
            help="One training run at a time: wait for it or cancel it." if active else None):
        from master_app.federated.session import prepare

        try:
            prepared = prepare(data, len(workers), request)
        except ValueError as exc:
            st.error(f"Training stopped: {exc}")
        else:
            start_training(prepared, workers, get_settings().auth_token)
            st.rerun()
    if active:
        st.subheader("Training run in progress")
        live_training_ui()
    else:
        finished_training_ui()
    results_ui(store, workers)
