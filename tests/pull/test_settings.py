"""A pull worker's settings: the store's address and its credential, each missing one
named with what to do; never a fallback."""

from __future__ import annotations

import pytest

from database.leases import PullSettings, check_name, credential_hash, new_credential
from database.store import StoreConfigError

CRED = "nadgp_" + "a" * 43


@pytest.mark.parametrize(("env", "says"), [
    ({"DATABASE_URL": "postgresql://w@db/x"}, "NADG_WORKER_CREDENTIAL is not set"),
    ({"NADG_WORKER_CREDENTIAL": "short", "DATABASE_URL": "postgresql://w@db/x"},
     "shorter than 32 bytes"),
    ({"NADG_WORKER_CREDENTIAL": CRED}, "needs the store's address"),
    ({"NADG_WORKER_CREDENTIAL": CRED, "SUPABASE_URL": "https://p.supabase.co"},
     "SUPABASE_ANON_KEY is not"),
])
def test_incomplete_settings_name_what_is_missing(env: dict[str, str], says: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "SUPABASE_URL", "SUPABASE_ANON_KEY",
                 "NADG_WORKER_CREDENTIAL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(StoreConfigError, match=says):
        PullSettings.model_validate(env).check()


def test_backend_choice() -> None:
    assert PullSettings.model_validate({"NADG_WORKER_CREDENTIAL": CRED,
                                        "DATABASE_URL": "postgresql://w@db/x"}
                                       ).check() == "postgres"
    assert PullSettings.model_validate({"NADG_WORKER_CREDENTIAL": CRED,
                                        "SUPABASE_URL": "https://p.supabase.co",
                                        "SUPABASE_ANON_KEY": "anon"}).check() == "supabase"


def test_credentials_are_random_and_names_are_checked() -> None:
    a, b = new_credential(), new_credential()
    assert a != b and len(a) >= 48 and credential_hash(a) != credential_hash(b)
    assert len(credential_hash(a)) == 64
    assert check_name("kaggle-1.gpu_a") == "kaggle-1.gpu_a"
    for bad in ("", "-x", "a b", "a'; drop table x; --", "x" * 64, "pull://x"):
        with pytest.raises(ValueError, match="bad pull worker name"):
            check_name(bad)
