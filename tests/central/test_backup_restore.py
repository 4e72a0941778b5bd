"""Backup and restore of central (issue 21, operations), on SQLite (backup API) and a real
PostgreSQL (pg_dump/pg_restore): the restored central is behind what its stores have seen
acknowledged; a live birth or a digest beyond it raises ``central_restored_behind`` once
per epoch and gets the lower ack again at once, live (PROTOCOL §4.3); the store resends and
nothing is lost or counted twice. Without the restore marker, the same birth is an ordinary
backlog: no alert."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from central.backup import backup, restore, restore_done
from central.cli import main
from central.errors import StorageError
from central.restore import ALERT_KIND
from tests.central.conftest import Central, FakeStore, event, wait_until


def _restored_central(make_central: Callable[..., Central], central: Central,
                      dump: Path) -> Central:
    central.stop()
    restore(central.config.database_url, dump)
    return make_central()


def test_restore_is_announced_and_the_store_goes_back(
        make_central: Callable[..., Central], make_store: Callable[[str], FakeStore],
        tmp_path: Path) -> None:
    central = make_central()
    s1, s2 = make_store("S001"), make_store("S002")
    s1.send([event(seq, delta=-1) for seq in range(1, 6)])
    s2.send([event(1, "B-2", 7, "receipt")])
    s1.wait_ack(5)
    s2.wait_ack(1)
    central.sync()
    dump = tmp_path / "backups" / "central.backup"
    dump.parent.mkdir()
    taken = backup(central.config.database_url, dump)
    assert stat.S_IMODE(dump.stat().st_mode) == 0o640
    s1.send([event(seq, delta=-1) for seq in range(6, 11)])  # acked, then lost by the restore
    s1.wait_ack(10)
    s2.send([event(2, "B-2", -2)])
    s2.wait_ack(2)

    central = _restored_central(make_central, central, dump)
    assert central.stock("S001") == {"A-1": (-5, 0)}
    before = s1.ack_count()
    s1.birth(last_seq=10)  # live: central applied 5 of this epoch
    lower = s1.wait_ack(5, after=before)
    assert lower["_retained"] is False
    alerts = central.alerts(ALERT_KIND)
    assert len(alerts) == 1
    detail = alerts[0]["detail"]
    detail = orjson.loads(detail) if isinstance(detail, str) else detail
    assert detail["store_seq"] == 10
    assert detail["central_applied"] == 5
    assert detail["backup_taken"] == taken
    # the store follows the lower ack: it resends 6…10 (and waits for an ack of 10 that
    # comes after the resend, not the old central's from before the restore)
    resent = s1.ack_count()
    s1.send([event(seq, delta=-1) for seq in range(6, 11)])
    s1.wait_ack(10, after=resent)
    assert central.stock("S001") == {"A-1": (-10, 0)}
    s1.birth(last_seq=10)  # caught up: no second alert
    # a digest beyond what central applied (S002 holds seq 2) is the other witness
    before = s2.ack_count()
    s2.publish(s2.topics.digest, orjson.dumps({
        "v": 1, "store": "S002", "epoch": s2.epoch, "through_seq": 2, "through_cseq": 0,
        "skus": 1, "sha256": "0" * 64}))
    s2.wait_ack(1, after=before)
    wait_until(lambda: len(central.alerts(ALERT_KIND)) == 2, what="digest alert")
    central.sync()
    assert len(central.alerts(ALERT_KIND)) == 2
    m = central.http.get("/metrics", headers=central.admin).text
    assert "edge_central_restored 1.0" in m

    # marker cleared (every store caught up): a birth beyond applied is a plain backlog
    central.stop()
    assert restore_done(central.config.database_url) is not None
    central = make_central()
    s1.birth(last_seq=12)
    central.sync()
    s1.send([event(11, delta=-1), event(12, delta=-1)])
    s1.wait_ack(12)
    assert len(central.alerts(ALERT_KIND)) == 2


def test_cli_backup_and_restore(make_central: Callable[..., Central],
                                make_store: Callable[[str], FakeStore], tmp_path: Path) -> None:
    central = make_central()
    s1 = make_store("S001")
    s1.send([event(1, delta=4, kind="receipt")])
    s1.wait_ack(1)
    central.sync()
    url = central.config.database_url
    dump = tmp_path / "cli.backup"
    runner = CliRunner()
    result = runner.invoke(main, ["db", "backup", "--database-url", url, str(dump)])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.output)["backup"] == str(dump)
    central.stop()
    result = runner.invoke(main, ["db", "restore", "--database-url", url, str(dump)])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.output)["restored_at"]
    missing = runner.invoke(main, ["db", "restore", "--database-url", url,
                                   str(tmp_path / "nope")])
    assert missing.exit_code != 0
    assert "no backup file" in missing.output
    result = runner.invoke(main, ["db", "restore-done", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.output)["cleared"]
    central = make_central()
    assert central.stock("S001") == {"A-1": (4, 0)}


def test_backup_of_a_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no SQLite database"):
        backup(f"sqlite:///{tmp_path}/absent.db", tmp_path / "out")
