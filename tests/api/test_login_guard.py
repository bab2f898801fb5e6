"""The login guard: failed passwords lock a name or address, over the real app and database."""

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.login_guard import LoginGuard, LoginRefusedError
from meterguard import passwords
from meterguard.runtime import Runtime
from meterguard.settings import ApiSettings, Settings, StorageSettings, load_settings
from tests.clock import ManualClock

EXAMPLE = Path(__file__).parents[2] / "deploy" / "meterguard.example.toml"
PASSWORDS = {"olga": "olga-right-horse", "carl": "carl-battery-staple"}


@dataclass
class Setup:
    app: FastAPI
    runtime: Runtime
    clock: ManualClock
    checks: list[str]  # names whose password the store was asked to check

    def client(self, address: str = "10.0.0.1") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://test")


async def _setup(tmp_path: Path, api: ApiSettings, monkeypatch: pytest.MonkeyPatch) -> Setup:
    settings = Settings(storage=StorageSettings(data_dir=tmp_path), api=api)
    runtime = Runtime.open(settings)
    for name, password in PASSWORDS.items():
        await runtime.users.create_user(name, "operator", password=password)
    checks: list[str] = []
    real_login = runtime.users.login

    async def counted_login(name: str, password: str, ttl_s: float) -> object:
        checks.append(name)
        return await real_login(name, password, ttl_s)

    monkeypatch.setattr(runtime.users, "login", counted_login)
    app = create_app(settings, runtime)
    clock = ManualClock(5_000.0)
    app.state.login_guard = LoginGuard.from_settings(settings.api, clock=clock)
    return Setup(app, runtime, clock, checks)


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hash the test users' passwords at a low cost: the guard counts, scrypt is elsewhere."""
    monkeypatch.setattr(passwords, "SCRYPT_N", 2**10)


@pytest.fixture
async def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Setup]:
    made = await _setup(tmp_path, ApiSettings(), monkeypatch)
    yield made
    await made.runtime.close()


async def _login(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    return await client.post("/api/login", json={"name": name, "password": password})


async def _metric(client: httpx.AsyncClient, name: str) -> float:
    text = (await client.get("/metrics")).text
    assert f"# HELP {name} " in text
    [line] = [row for row in text.splitlines() if row.startswith(f"{name} ")]
    return float(line.split()[1])


async def test_five_failures_lock_the_name_and_not_the_others(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="api.login_guard")
    async with setup.client() as client:
        for _ in range(5):
            assert (await _login(client, "olga", "wrong-password")).status_code == 401
        assert len(setup.checks) == 5
        refused = await _login(client, "olga", PASSWORDS["olga"])
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "300"
        assert len(setup.checks) == 5  # refused without checking the password
        setup.clock.now += 100.5
        shouting = await _login(client, "OLGA", PASSWORDS["olga"])  # names are case-blind
        assert shouting.status_code == 429
        assert shouting.headers["retry-after"] == "200"
        other = await _login(client, "carl", PASSWORDS["carl"])
        assert other.status_code == 200
        assert other.json()["name"] == "carl"
        assert len(setup.checks) == 6
        assert await _metric(client, "meterguard_login_failures_total") == 5
        assert await _metric(client, "meterguard_login_refused_total") == 2
    locks = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert locks == ["login locked for name 'olga': 5 failures within 300 s"]


async def test_the_window_passes_and_success_clears_the_name(setup: Setup) -> None:
    async with setup.client() as client:
        for _ in range(3):
            assert (await _login(client, "olga", "wrong-password")).status_code == 401
        setup.clock.now += 200
        for _ in range(2):
            assert (await _login(client, "olga", "wrong-password")).status_code == 401
        locked = await _login(client, "olga", PASSWORDS["olga"])
        assert locked.status_code == 429
        assert locked.headers["retry-after"] == "100"  # when the first three expire
        setup.clock.now += 100
        # Two failures are still in the window; the right password is let through.
        assert (await _login(client, "olga", PASSWORDS["olga"])).status_code == 200
        # Had the success not cleared those two, the third failure here would lock.
        for _ in range(4):
            assert (await _login(client, "olga", "wrong-password")).status_code == 401
        assert (await _login(client, "olga", PASSWORDS["olga"])).status_code == 200


async def test_an_address_trying_many_names_is_locked(setup: Setup) -> None:
    async with setup.client("10.0.0.66") as guesser, setup.client("10.0.0.7") as colleague:
        # Four failures for each of five names: no name reaches five, the address 20.
        for n in range(5):
            for _ in range(4):
                assert (await _login(guesser, f"user{n}", "wrong-password")).status_code == 401
        refused = await _login(guesser, "carl", PASSWORDS["carl"])
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "300"
        assert (await _login(colleague, "carl", PASSWORDS["carl"])).status_code == 200
        assert (await _login(colleague, "user0", "wrong-password")).status_code == 401
        assert await _metric(colleague, "meterguard_login_failures_total") == 21
        assert await _metric(colleague, "meterguard_login_refused_total") == 1


async def test_parallel_guesses_cannot_outrun_the_count(setup: Setup) -> None:
    async with setup.client() as client:
        answers = await asyncio.gather(
            *(_login(client, "olga", f"guess-{n:04d}") for n in range(20))
        )
    codes = sorted(a.status_code for a in answers)
    assert codes == [401] * 5 + [429] * 15
    assert len(setup.checks) == 5


async def test_zero_turns_the_guard_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = await _setup(tmp_path, ApiSettings(login_max_failures=0), monkeypatch)
    try:
        async with made.client() as client:
            for _ in range(12):
                assert (await _login(client, "olga", "wrong-password")).status_code == 401
            assert (await _login(client, "olga", PASSWORDS["olga"])).status_code == 200
            # Failures are still counted; nothing is refused.
            assert await _metric(client, "meterguard_login_failures_total") == 12
            assert await _metric(client, "meterguard_login_refused_total") == 0
        assert made.app.state.login_guard.tracked == 0
    finally:
        await made.runtime.close()


async def test_the_app_makes_its_own_guard_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = await _setup(tmp_path, ApiSettings(login_max_failures=2), monkeypatch)
    del made.app.state.login_guard  # as in a served app: made on the first request
    try:
        async with made.client() as client:
            assert await _metric(client, "meterguard_login_failures_total") == 0
            for _ in range(2):
                assert (await _login(client, "olga", "wrong-password")).status_code == 401
            refused = await _login(client, "olga", PASSWORDS["olga"])
            assert refused.status_code == 429
            assert 299 <= int(refused.headers["retry-after"]) <= 300
    finally:
        await made.runtime.close()


def _fail(guard: LoginGuard, name: str, address: str | None = None) -> None:
    with guard.attempt(name, address) as attempt:
        attempt.succeeded = False


def test_old_keys_are_pruned_and_the_table_is_capped() -> None:
    clock = ManualClock(5_000.0)
    guard = LoginGuard(2, 60.0, max_keys=3, clock=clock)
    for name in ["a", "b", "c"]:
        _fail(guard, name)
        clock.now += 1
    _fail(guard, "a")  # "a" is now the most recently failed
    _fail(guard, "d")  # over the cap: "b", the least recently failed, is dropped
    assert guard.tracked == 3
    _fail(guard, "b")
    with guard.attempt("b", None):
        pass  # one failure since it was forgotten: still admitted
    with pytest.raises(LoginRefusedError):
        _fail(guard, "a")  # "a" kept both of its failures
    clock.now += 61
    _fail(guard, "e")  # every other key's newest failure has left the window
    assert guard.tracked == 1
    assert guard.failures_total == 7
    assert guard.refused_total == 1


def test_attempts_in_flight_count_against_the_limit() -> None:
    guard = LoginGuard(1, 60.0, clock=ManualClock(5_000.0))
    with guard.attempt("olga", "10.0.0.1"):
        with pytest.raises(LoginRefusedError) as info:
            _fail(guard, "olga", "10.0.0.2")
        assert info.value.retry_after_s == 1
    # The first attempt ended without an outcome (say, the store was down): no failure.
    assert guard.failures_total == 0
    with guard.attempt("olga", "10.0.0.2"):
        pass


def test_the_example_file_states_the_defaults() -> None:
    assert load_settings(EXAMPLE).api == ApiSettings()


async def test_the_address_limit_can_be_turned_off_for_a_shared_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = ApiSettings(anonymous_role=None, login_address_max_failures=0)
    shared = await _setup(tmp_path, api, monkeypatch)
    try:
        async with shared.client("10.0.0.1") as proxy:
            for n in range(8):
                for _ in range(4):
                    assert (await _login(proxy, f"user{n}", "wrong-password")).status_code == 401
            # 32 failures from the proxy's address: the users behind it still get in.
            assert (await _login(proxy, "carl", PASSWORDS["carl"])).status_code == 200
            # The name limit still holds.
            for _ in range(5):
                assert (await _login(proxy, "olga", "wrong-password")).status_code == 401
            assert (await _login(proxy, "olga", PASSWORDS["olga"])).status_code == 429
    finally:
        await shared.runtime.close()
