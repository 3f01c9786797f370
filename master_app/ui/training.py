"""The Training page: federated training over the live workers, charts, Deploy.

Pick a labelled CSV (or an example), the label column, rounds, strategy and codec; the
rounds (``master_app.service.training``) run in the background through the same
:class:`~master_app.ui.run_state.BackgroundRun` machinery as the Run page, never in the
script thread: a fragment polls the run for a progress bar, live loss / accuracy charts
and Cancel. The last result stays in the session with its per-round table, bytes on the
wire, and a Deploy button that publishes a text head to the workers.

Loss and accuracy get a chart each, with titles and whole-number rounds
(:mod:`master_app.ui.training_charts`); bytes read as ``50.9 KiB``. After a deployment,
**Use this model on the Run page** fills the Run page with a ``classify`` plan that names
the trained head (see :func:`use_model`). torch is imported on the first visit, behind a
spinner, never when the app starts.

Session state keys: ``training_run`` (the background run's id, the prepared job and the
list of round reports the run appends to), ``training_result`` (the finished run),
``training_deploy`` (the id of the last Deploy, which runs in the background too).
Written for the Run page by **Use this model**: ``_run_command_next``, ``_run_command``,
``run_plan``, ``run_plan_gen`` (the Run page's own keys) and ``nadg_use_model``.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from database.models import WorkerNode
from database.store import Store, StoreError
from master_app.service import training as svc
from master_app.service.training import TrainingCancelled
from master_app.ui import training_charts as charts
from master_app.ui.auth import can_operate
from master_app.ui.resources import get_runs, get_settings, get_store
from nexus_common.protocol import WeightCodec

if TYPE_CHECKING:  # torch comes with these: imported when the page trains
    from master_app.service.training import LabelledData, Prepared, RoundReport, TrainRequest

logger = logging.getLogger(__name__)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DIGITS = "digits demo (scikit-learn, numeric)"
RESULT_KEY = "training_result"
RUN_KEY = "training_run"
DEPLOY_KEY = "training_deploy"
USE_MODEL_KEY = "nadg_use_model"
POLL_S = 0.5
RUN_PAGE_PATH = "run"  # the Run page's url_path in master_app/app.py


def report_frame(reports: list[RoundReport]) -> pd.DataFrame:
    """One row per round: loss, accuracy, who was merged, bytes (as numbers)."""
    return charts.round_frame(reports)


def _load_training_library() -> bool:
    """torch and the training code, imported once per master (seconds, the first time)."""
    svc.load_training_library()
    return True


#: Behind a spinner on the first visit to the page; instant afterwards.
training_library: Callable[[], bool] = st.cache_resource(
    show_spinner="Loading the training library (torch): a few seconds, on the first visit "
                 "only...")(_load_training_library)


def charts_ui(frame: pd.DataFrame) -> None:
    """Loss and accuracy side by side, each on its own axis with a title."""
    left, right = st.columns(2)
    left.altair_chart(charts.loss_chart(frame), width="stretch")
    right.altair_chart(charts.accuracy_chart(frame), width="stretch")


def data_ui() -> LabelledData | None:
    """Choose the data: an upload, an example CSV, or the digits demo."""
    examples = sorted(p.name for p in EXAMPLES.glob("*labelled*.csv"))
    source = st.radio("Data", ["Upload a CSV", *examples, DIGITS], horizontal=True,
                      key="train_source",
                      help="A CSV with a label column (text rows train a text head on "
                           "sentence embeddings; numeric rows train a small MLP).")
    if source == DIGITS:
        return svc.load_digits()
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
    label = st.selectbox("Label column", columns, index=default, key="train_label",
                         help="The column the model learns to predict.")
    try:
        return svc.load_labelled_csv(path, str(label))
    except (OSError, ValueError) as exc:
        st.error(f"Cannot train on {name}: {str(exc).replace(str(path), name)}")
        return None


def options_ui() -> TrainRequest:
    """Rounds, strategy, codec and sharding."""
    cols = st.columns(4)
    rounds = int(cols[0].number_input(
        "Rounds", 1, 200, 10, key="train_rounds",
        help="How many times the workers train on their shard and the master merges."))
    strategy = str(cols[1].selectbox(
        "Strategy", ["fedavg", "diloco"], key="train_strategy",
        help="fedavg: average the workers' weights each round. diloco: an outer optimiser "
             "with momentum over the averaged updates (fewer rounds for the same loss)."))
    codec = WeightCodec(cols[2].selectbox(
        "Weights on the wire", [c.value for c in WeightCodec], key="train_codec",
        help="How weights travel: fp32 is exact; fp16 / int8 send 2x / 4x fewer bytes."))
    skew = cols[3].checkbox("Non-IID shards", key="train_skew",
                            help="Label-skewed shards, Dirichlet(0.5): each worker sees "
                                 "mostly some labels, as real clients do.")
    return svc.train_request(rounds=rounds, strategy=strategy, codec=codec,
                             non_iid_alpha=0.5 if skew else None)


def start_training(prepared: Prepared, workers: list[WorkerNode], token: str | None) -> str:
    """Start the rounds in the background; remembers the run in the session; returns its id."""
    run_id = f"train-{uuid.uuid4().hex[:12]}"
    reports: list[RoundReport] = []
    ckpt = Path(tempfile.mkdtemp(prefix="nadg-train-ui-"))
    factory = svc.training_job(prepared, workers, token, ckpt, reports)
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
        charts_ui(report_frame(seen))


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
    cols[0].metric("Held-out accuracy", f"{last.accuracy or 0:.3f}", border=True,
                   help="Accuracy of the merged model on rows no worker trained on.")
    cols[1].metric("Rounds", len(result.reports), border=True)
    cols[2].metric("On the wire", charts.wire_total(frame), border=True,
                   help="Weights sent to and received from the workers, all rounds.")
    charts_ui(frame)
    st.altair_chart(charts.bytes_chart(frame), width="stretch")
    st.dataframe(charts.round_table(frame), hide_index=True, placeholder="—")
    if not svc.deployable(prepared):
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
    job = svc.deploy_job(store, workers, result.weights, prepared, get_settings().auth_token,
                         models_dir=Path(".nadg").resolve() / "models",
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
        st.button("Use this model on the Run page", key="train_use_model", type="primary",
                  icon=":material/arrow_forward:", on_click=use_model,
                  args=(deployment.model.id, list(deployment.model.labels),
                        deployment.model.sha256 or None),
                  help="Fills the Run page with a classify plan that uses this trained "
                       "model (upload the rows to label there).")
    else:
        st.error(f"Model {deployment.model.id} is registered but no worker took it (reasons "
                 "below): check the workers on the Workers page and deploy again.")
    for worker_id, error in deployment.failed.items():
        st.warning(f"Worker {worker_id}: {error}")


def use_model(model_id: str, labels: list[str], sha256: str | None) -> None:
    """Fill the Run page with a ``classify`` plan over the trained head ``model_id`` and
    ask for the Run page (a button callback: it runs before the next script run).

    Writes the Run page's own keys (see :mod:`master_app.ui.run_page`): the command goes
    in through ``_run_command_next`` (set before the box is drawn), the proposal in
    ``run_plan`` for the data loaded there now (so Run is enabled at once when the rows
    to label are already uploaded). ``nadg_use_model`` records the model chosen.
    """
    command, plan = svc.use_model_plan(model_id, labels, sha256)
    generation = int(st.session_state.get("run_plan_gen", 0)) + 1
    loaded = st.session_state.get("run_dataset")
    st.session_state["_run_command_next"] = command
    st.session_state["_run_command"] = command
    st.session_state["run_plan_gen"] = generation
    st.session_state["run_plan"] = {
        "plan": plan, "planner": "trained model",
        "reason": f"the head {model_id} trained on the Training page", "command": command,
        "data": getattr(loaded, "key", None), "requested": None, "gen": generation,
    }
    st.session_state[USE_MODEL_KEY] = {"ref": model_id, "labels": labels, "sha256": sha256,
                                       "command": command}
    st.session_state["training_go_run"] = True


def _go_to_run_page() -> None:
    """After **Use this model**: switch to the Run page (a note when there is none)."""
    if not st.session_state.pop("training_go_run", False):
        return
    try:
        st.switch_page(st.Page(_run_page_stub, title="Run a task", url_path=RUN_PAGE_PATH))
    except StreamlitAPIException:  # no Run page in this navigation (a viewer, a test)
        st.success("The Run page is filled in with this model: open **Run a task**.")


def _run_page_stub() -> None:
    """Never runs: :func:`st.switch_page` only needs the Run page's url_path."""


def training_page() -> None:
    """The whole Training page."""
    st.title("Training")
    if not can_operate():
        st.info("Training is for operators: you are signed in as a viewer.")
        return
    st.caption("Federated training: each worker trains on its shard, the master merges "
               "the updates round by round (FedAvg or DiLoCo).")
    try:
        store = get_store()
        workers = svc.trainable_workers(store)
    except StoreError as exc:
        st.error(f"The registry is unavailable: {exc}")
        return
    _go_to_run_page()
    if not workers:
        st.warning("No live workers can train: add one on the Workers page.")
    training_library()
    data = data_ui()
    request = options_ui()
    info = st.session_state.get(RUN_KEY)
    run = get_runs().get(info["id"]) if info else None
    active = run is not None and run.running
    if data is not None and workers and st.button(
            "Train", type="primary", key="train_go", disabled=active,
            help="One training run at a time: wait for it or cancel it." if active else None):
        try:
            prepared = svc.prepare_training(data, len(workers), request)
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
