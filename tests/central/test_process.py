"""The real ``edge-central serve`` process: SIGKILL mid-stream and restart lose and duplicate
nothing (acks never exceed what was committed), and the operator CLI over HTTP."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from click.testing import CliRunner

from central.cli import main
from tests.central.conftest import FakeStore, event, wait_until
from tests.helpers.mosquitto import Broker
from tests.helpers.ports import free_port
from tests.helpers.progress import StallWatch

ADMIN = "cli-admin-token"


class CentralProcess:
    def __init__(self, tmp_path: Path, broker: Broker) -> None:
        self.db = tmp_path / "central.db"
        self.port = free_port()
        tokens = tmp_path / "tokens"
        tokens.mkdir()
        (tokens / "S001.token").write_text("tok-1")
        self.admin_file = tmp_path / "admin.token"
        self.admin_file.write_text(ADMIN)
        self.config = tmp_path / "central.toml"
        self.config.write_text(
            f'database_url = "sqlite:///{self.db}"\n'
            "resend_after = 2\n"
            f'[broker]\nurl = "{broker.url}"\nclient_id = "central-proc"\n'
            f'[http]\nlisten = "127.0.0.1:{self.port}"\nstore_tokens_dir = "{tokens}"\n'
            f'admin_token_file = "{self.admin_file}"\n')
        self.log = tmp_path / "central.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "central", "serve", "--config", str(self.config)],
                stdout=log, stderr=log)

        def ready() -> bool:
            try:
                r = httpx.get(f"{self.url}/healthz", timeout=1)
            except httpx.HTTPError:
                return False
            return r.status_code == 200 and r.json()["mqtt_connected"]

        try:
            wait_until(ready, 60, "central process ready")
        except AssertionError:
            self.kill()
            raise AssertionError(f"central did not start: {self.log.read_text()[-2000:]}"
                                 ) from None

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def terminate(self) -> int:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGTERM)
        code = self.proc.wait(20)
        self.proc = None
        return code


@pytest.fixture
def central_process(tmp_path: Path, broker: Broker) -> Iterator[CentralProcess]:
    proc = CentralProcess(tmp_path, broker)
    proc.start()
    yield proc
    if proc.proc is not None:
        proc.kill()


def _committed(db: Path, store: str) -> tuple[int, int]:
    conn = sqlite3.connect(db)
    try:
        applied = conn.execute("SELECT COALESCE(MAX(applied_seq), 0) FROM epochs WHERE "
                               "store = ?", (store,)).fetchone()[0]
        events = conn.execute("SELECT COUNT(*) FROM events WHERE store = ?",
                              (store,)).fetchone()[0]
    finally:
        conn.close()
    return int(applied), int(events)


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a backstop only: the stream's own wait follows progress
def test_sigkill_mid_stream_loses_and_duplicates_nothing(
        central_process: CentralProcess, broker: Broker) -> None:
    """20 SIGKILLs at random moments (inside group commits, between a commit and its ack,
    with the stock checkpoint behind the event log), each followed by a restart: every
    ack was committed first, and the end state holds each event exactly once."""
    total, size, kills = 6000, 50, 20
    rng = random.Random(4)
    store = FakeStore(broker.port, "S001")
    try:
        def max_ack() -> int:
            with store.lock:
                return max((a["through_seq"] for a in store.acks), default=0)

        next_kill = total // (kills + 1)
        killed = 0
        # fails only when neither the acks nor the kills move for 120 s (a loaded machine
        # makes the whole stream slow, never stuck)
        progress = StallWatch(120, "the stream's acks and the kills")
        while max_ack() < total:
            progress.see((max_ack(), killed))
            progress.check()
            start = max_ack() + 1
            # a store's go-back-N: send a window from the watermark, then wait for progress;
            # a window (250) smaller than the distance between kills (285) leaves no kill out
            for first in range(start, min(total, start + 5 * size - 1) + 1, size):
                last = min(total, first + size - 1)
                store.send([event(s, id=f"e{s}") for s in range(first, last + 1)])
            if killed < kills and max_ack() >= next_kill:
                time.sleep(rng.uniform(0, 0.05))  # land anywhere in the writer's work
                central_process.kill()
                killed += 1
                next_kill += total // (kills + 1)
                seen = max_ack()
                applied, rows = _committed(central_process.db, "S001")
                # every ack seen was committed before it was published
                assert seen <= applied
                assert rows == applied
                central_process.start()
            before = max_ack()
            with contextlib.suppress(AssertionError):  # no progress: resend from the watermark
                wait_until(lambda b=before: max_ack() > b, 2.0)
        assert killed == kills
        applied, rows = _committed(central_process.db, "S001")
        assert applied == rows == total
        stock = httpx.get(f"{central_process.url}/v1/stores/S001/stock",
                          headers={"Authorization": f"Bearer {ADMIN}"}).json()["stock"]
        assert stock == [{"sku": "A-1", "on_hand": -total, "reserved": 0,
                          "available": -total}]
        alerts = httpx.get(f"{central_process.url}/v1/alerts",
                           headers={"Authorization": f"Bearer {ADMIN}"}).json()["alerts"]
        assert [a for a in alerts if a["kind"] == "event_conflict"] == []
        # SIGTERM: a clean exit, which writes the stock checkpoint through the last event
        assert central_process.terminate() == 0
        conn = sqlite3.connect(central_process.db)
        try:
            assert conn.execute("SELECT on_hand FROM stock").fetchall() == [(-total,)]
            assert conn.execute("SELECT projected_seq FROM epochs").fetchall() == [(total,)]
        finally:
            conn.close()
    finally:
        store.close()


def test_cli_over_http(central_process: CentralProcess, broker: Broker,
                       tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["--json", "--url", central_process.url, "--token-file",
            str(central_process.admin_file)]
    store = FakeStore(broker.port, "S001")
    try:
        store.birth(applied_cseq=0)
        wait_until(lambda: httpx.get(f"{central_process.url}/v1/stores/S001",
                                     headers={"Authorization": f"Bearer {ADMIN}"}
                                     ).status_code == 200)
        r = runner.invoke(main, ["command", "adjust", *base, "--store", "S001", "--sku",
                                 "A-100", "--delta", "24", "--reason", "replenishment"])
        assert r.exit_code == 0, r.output
        assert orjson.loads(r.output)["commands"][0]["cseq"] == 1
        wait_until(lambda: store.cseqs() == [1])
        csv_file = tmp_path / "catalog.csv"
        csv_file.write_text("sku,name,gtins,price,currency,uom,active\n"
                            "A-100,Tea,4006381333931|123,2.50,EUR,unit,true\n"
                            "B-200,Flour,,1.10,EUR,g,false\n")
        r = runner.invoke(main, ["catalog", "import", *base, "--store", "S001", str(csv_file)])
        assert r.exit_code == 0, r.output
        r = runner.invoke(main, ["reserve", "create", *base, "--store", "S001", "--order-ref",
                                 "WEB-9", "--line", "A-100=2", "--reservation-id", "R9"])
        assert r.exit_code == 0, r.output
        r = runner.invoke(main, ["reserve", "cancel", *base, "--store", "S001", "R9"])
        assert r.exit_code == 0, r.output
        r = runner.invoke(main, ["command", "count", *base, "--store", "S001", "--sku", "A-100"])
        assert r.exit_code == 0, r.output
        r = runner.invoke(main, ["command", "resync", *base, "--store", "S001"])
        assert r.exit_code == 0, r.output
        wait_until(lambda: store.cseqs() == [1, 2, 3, 4, 5, 6])
        assert [c["type"] for c in store.commands] == [
            "stock.adjust", "catalog.upsert", "reservation.create", "reservation.cancel",
            "count.request", "resync"]
        assert store.commands[1]["data"]["items"][1] == {
            "sku": "B-200", "name": "Flour", "gtins": [], "price": "1.10", "currency": "EUR",
            "uom": "g", "active": False}
        r = runner.invoke(main, ["stock", *base, "--store", "S001"])
        assert r.exit_code == 0, r.output
        assert orjson.loads(r.output)["stock"] == [
            {"sku": "A-100", "on_hand": 24, "reserved": 2, "available": 22}]
        r = runner.invoke(main, ["status", *base])
        assert r.exit_code == 0, r.output
        assert orjson.loads(r.output)["stores"][0]["issued_cseq"] == 6
        r = runner.invoke(main, ["alerts", *base, "--store", "S001"])
        assert r.exit_code == 0, r.output
        r = runner.invoke(main, ["stock", "--url", central_process.url, "--token-file",
                                 str(tmp_path / "tokens" / "S001.token"), "--store", "S001"])
        assert r.exit_code != 0
        assert "401" in r.output
    finally:
        store.close()
