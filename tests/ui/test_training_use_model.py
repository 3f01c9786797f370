"""Issue 15 item 9: "Use this model" fills the Run page with a plan that names the trained
head (no typing ``{"head": {"ref": ...}}``), and the plan does not say "zero-shot"."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from master_app.service.training import use_model_plan
from tests.support.ui import _loopback_master  # noqa: F401 - autouse: a loopback master

FILLED = """
import streamlit as st
from master_app.ui import training
from master_app.ui.run_page import run_page

if "seeded" not in st.session_state:
    st.session_state["seeded"] = True
    training.use_model("head-0123456789ab", ["billing", "bug", "feature"], None)
run_page()
"""

BUTTON = """
import streamlit as st
from master_app.ui import training

st.button("use", key="use", on_click=training.use_model,
          args=("head-0123456789ab", ["billing", "bug"], "ab" * 32))
training._go_to_run_page()
"""


def test_the_plan_names_the_head_and_is_not_zero_shot() -> None:
    command, plan = use_model_plan("head-1", ["a", "b"], "cd" * 32)
    assert command == "classify as a / b"
    assert plan.params["head"] == {"ref": "head-1", "labels": ["a", "b"], "sha256": "cd" * 32}
    assert "zero-shot" not in plan.explanation and "trained model head-1" in plan.explanation
    plan.sample_payload()  # a payload a worker accepts


def test_the_button_writes_the_run_pages_keys(registry_path: object
                                                                    ) -> None:
    at = AppTest.from_string(BUTTON, default_timeout=30).run()
    at.button(key="use").click().run()
    assert not at.exception
    proposal = at.session_state["run_plan"]
    assert proposal["command"] == "classify as billing / bug"
    assert proposal["plan"].params["head"]["ref"] == "head-0123456789ab"
    assert at.session_state["_run_command_next"] == "classify as billing / bug"
    assert at.session_state["nadg_use_model"]["ref"] == "head-0123456789ab"
    assert "training_go_run" not in at.session_state  # the switch to the Run page was asked


def test_the_run_page_shows_the_models_plan_not_a_stale_one(registry_path: object) -> None:
    at = AppTest.from_string(FILLED, default_timeout=30).run()
    assert not at.exception
    assert at.text_area(key="run_command").value == "classify as billing / bug / feature"
    assert any("trained model head-0123456789ab" in i.value for i in at.info)
    assert not any("out of date" in w.value for w in at.warning)
    assert not any("zero-shot" in m.value for m in [*at.info, *at.markdown, *at.caption])
