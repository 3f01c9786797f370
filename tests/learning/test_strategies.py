"""One contract test for every Strategy, plus what each one promises of its own."""

from __future__ import annotations

import pytest
import torch

from master_app.federated.sharding import iid_shards, label_skew_shards, train_test_split
from master_app.federated.strategies import ClientUpdate, DiLoCo, FedAvg, Strategy


def _updates() -> list[ClientUpdate]:
    return [ClientUpdate(shard=1, delta={"w": torch.full((2, 2), 3.0)}, num_samples=30,
                         loss=1.0),
            ClientUpdate(shard=0, delta={"w": torch.full((2, 2), -1.0)}, num_samples=10,
                         loss=2.0)]


class StrategyContract:
    """Every strategy: keeps names and shapes, moves towards the deltas, checkpoints state."""

    def make(self) -> Strategy:
        raise NotImplementedError

    def test_shapes_kept_and_direction(self) -> None:
        g = {"w": torch.zeros(2, 2)}
        new = self.make().aggregate(g, _updates())
        assert new.keys() == g.keys() and new["w"].shape == (2, 2)
        assert float(new["w"].mean()) > 0  # the weighted mean delta is +2

    def test_order_of_updates_does_not_matter(self) -> None:
        g = {"w": torch.zeros(2, 2)}
        a = self.make().aggregate(g, _updates())
        b = self.make().aggregate(g, list(reversed(_updates())))
        assert torch.equal(a["w"], b["w"])

    def test_empty_round_is_refused(self) -> None:
        with pytest.raises(ValueError, match="empty"):
            self.make().aggregate({"w": torch.zeros(1)}, [])

    def test_state_roundtrip_continues_identically(self) -> None:
        g = {"w": torch.zeros(2, 2)}
        s1 = self.make()
        g1 = s1.aggregate(g, _updates())
        s2 = self.make()
        s2.load_state(s1.state())
        assert torch.equal(s1.aggregate(g1, _updates())["w"], s2.aggregate(g1, _updates())["w"])


class TestFedAvg(StrategyContract):
    def make(self) -> Strategy:
        return FedAvg()

    def test_sample_weighted_mean(self) -> None:
        new = FedAvg().aggregate({"w": torch.ones(2, 2)}, _updates())
        assert torch.allclose(new["w"], torch.full((2, 2), 1.0 + (30 * 3 - 10) / 40))


class TestDiLoCo(StrategyContract):
    def make(self) -> Strategy:
        return DiLoCo(outer_lr=0.5, momentum=0.9)

    def test_nesterov_momentum(self) -> None:
        s = DiLoCo(outer_lr=0.5, momentum=0.9)
        w1 = s.aggregate({"w": torch.zeros(1)}, [ClientUpdate(0, {"w": torch.ones(1)}, 1, 0)])
        # g = -1, buf = -1: w = 0 - 0.5 * (-1 + 0.9 * -1) = 0.95
        assert torch.allclose(w1["w"], torch.tensor([0.95]))
        w2 = s.aggregate(w1, [ClientUpdate(0, {"w": torch.ones(1)}, 1, 0)])
        # buf = 0.9 * -1 - 1 = -1.9: w = 0.95 + 0.5 * (1 + 1.71) = 2.305
        assert torch.allclose(w2["w"], torch.tensor([2.305]))


def test_sharding_covers_every_row_once_and_skews_labels() -> None:
    labels = [i % 10 for i in range(1000)]
    for shards in (iid_shards(labels, 4, seed=1), label_skew_shards(labels, 4, 0.3, seed=1)):
        flat = sorted(i for s in shards for i in s)
        assert flat == list(range(1000)) and all(shards)
    skew = label_skew_shards(labels, 4, 0.3, seed=1)
    iid = iid_shards(labels, 4, seed=1)

    def top_share(shard: list[int]) -> float:
        counts = torch.bincount(torch.tensor([labels[i] for i in shard]), minlength=10)
        return float(counts.max()) / len(shard)

    assert max(map(top_share, skew)) > 2 * max(map(top_share, iid))
    train, test = train_test_split(100, 0.2, seed=0)
    assert len(test) == 20 and not set(train) & set(test)
