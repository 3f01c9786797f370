"""Every fleet worker starts at the level it was asked for and reports it."""

from __future__ import annotations

from tests.security.sandbox_fleet import Target


def test_reports_its_level(target: Target) -> None:
    sandbox = target.status()["sandbox"]
    assert sandbox["level"] == target.level
    assert sandbox["weak"] is (target.level == "process")
    assert f"python sandbox level {target.level}" in target.log_text()
    target.assert_still_serves()
