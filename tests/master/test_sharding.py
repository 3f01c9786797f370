"""Sharding: sizes from capacity and item count, within protocol limits, in input order."""

from __future__ import annotations

from master_app.intake import load_dataset
from master_app.planning import LocalPlanner, parse_plan
from master_app.sharding import build_shards, shard_size_for
from nexus_common import protocol
from tests.master.fakes import node
from tests.master.test_intake import EXAMPLES


def test_shard_size_keeps_every_slot_busy_and_respects_limits() -> None:
    two = [node("http://a", 2), node("http://b", 2)]
    assert shard_size_for(40, two) == 4  # 4 slots x 4 shards each -> 16 shards wanted
    assert shard_size_for(1000, two) == 63  # ceil(1000 / 16)
    assert shard_size_for(1_000_000, two) == protocol.MAX_TEXTS
    assert shard_size_for(3, two) == 3
    assert shard_size_for(400, [node("http://a", 50)]) == 4  # many slots: small shards
    plan = parse_plan({"operation": "embed", "text_column": "text", "shard_count": 4})
    assert shard_size_for(40, two, plan) == 10


def test_classify_shards_cover_every_row_once_in_order() -> None:
    data = load_dataset(EXAMPLES / "tickets.csv")
    plan = LocalPlanner().plan("classify as billing / bug / feature", data.summary(), [])
    shards = build_shards(plan, data, [node("http://a", 2)])
    rows = [r for s in shards for r in s.rows]
    assert rows == list(range(40))
    assert [s.idx for s in shards] == list(range(len(shards)))
    first = shards[0].to_new_subtask(plan.operation)
    assert first.payload["texts"][0] == data.texts("text")[0]
    assert first.payload["labels"] == ["billing", "bug", "feature"]
    protocol.ClassifyPayload.model_validate({k: v for k, v in first.payload.items()
                                             if k != "rows"})


def test_python_and_noop_shards() -> None:
    plan = LocalPlanner().plan("run python over range(5): RESULT = INPUT ** 2", None, [])
    shards = build_shards(plan, None, [])
    assert [s.payload["input"] for s in shards] == [0, 1, 2, 3, 4]
    data = load_dataset(EXAMPLES / "numbers.jsonl")
    per_row = LocalPlanner().plan("run python per row: RESULT = INPUT['x'] + 1",
                                  data.summary(), [])
    shards = build_shards(per_row, data, [])
    assert shards[2].payload["input"] == {"x": 3, "text": "number 3"}
    noop = build_shards(LocalPlanner().plan("noop 7", None, []), None, [])
    assert [s.payload["echo"] for s in noop] == list(range(7))
