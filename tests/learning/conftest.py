"""Fixtures of the learning tests: four in-process workers on loopback, the digits data."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from master_app.dispatch import WorkerClient
from master_app.federated.datasets import LabelledData, load_digits_data
from tests.support.servers import serve_app
from tests.support.ui import _loopback_master  # noqa: F401 - autouse fixture
from worker_node.main import create_app
from worker_node.settings import WorkerSettings

TOKEN = "learning-test-grid-secret-51c2-0123456789ab"


def worker_settings(i: int) -> WorkerSettings:
    """Settings of in-process test worker ``i`` (one torch thread: 2 shared cores)."""
    return WorkerSettings(NADG_AUTH_TOKEN=TOKEN, WORKER_ID=f"learn-{i}", NADG_CAPACITY=1,
                          NADG_QUEUE_SIZE=8, NADG_REGISTER=False, NADG_TORCH_THREADS=1)


@pytest.fixture(scope="session")
def grid() -> Iterator[list[str]]:
    """Four real worker apps (uvicorn on loopback, in this process), shared by the module."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(serve_app(create_app(worker_settings(i))))
               for i in range(4)]


@pytest.fixture(scope="session")
def digits() -> LabelledData:
    """scikit-learn's bundled digits."""
    return load_digits_data()


@pytest.fixture
async def client() -> AsyncIterator[WorkerClient]:
    """A WorkerClient with the grid's token."""
    async with httpx.AsyncClient() as http:
        yield WorkerClient(http, TOKEN)
