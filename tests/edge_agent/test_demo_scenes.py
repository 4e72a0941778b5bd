"""The demo's scenes (edge_agent/demo_scenes*.py): the real demo (simulator, agent,
mosquitto, central as processes) tells each feature merged this session, followed line by
line with generous deadlines; and a scene that fails is told, never raised."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import pytest

from edge_agent import demo_scenes
from edge_agent.demo_scenes_floor import SceneFailed
from tests.edge_agent.test_demo import demo


@pytest.mark.timeout(300)
@pytest.mark.skipif(shutil.which("mosquitto", path="/usr/sbin:/usr/bin") is None,
                    reason="mosquitto is not installed")
def test_demo_tells_every_scene(tmp_path: Path) -> None:
    state = tmp_path / "demo-state"
    with demo(state) as run:
        # 1. pages: both URLs, with the paths of the tokens, never the tokens
        store = run.wait_for(r"store page:   http://127\.0\.0\.1:\d+/  \(sign in with the "
                             r"token in .*api-token\)")
        central = run.wait_for(r"central page: http://127\.0\.0\.1:\d+/  \(sign in with the "
                               r"admin token in .*admin\.token\)")
        for token_file in (state / "api-token", state / "admin.token"):
            assert token_file.read_text().strip() not in store + central
        assert (state / "api-token").stat().st_mode & 0o777 == 0o600
        # 2. an online order brokered, picked on the picker (a wrong item refused), collected
        run.wait_for(r"online order WEB-\d+ .*brokered to DEMO1")
        run.wait_for(r"PK: scan refused \(pick_wrong_item\)")
        run.wait_for(r"the customer shows code 4711: WEB-\d+ collected")
        run.wait_for(r"central: order WEB-\d+ is collected; network ATP of green tea: ")
        # 3. the customer recognised at the till, then a sale that central values
        run.wait_for(r"till: customer found: Nina Berg, gold with 1200 points, wishlist "
                     r"COFFEE-1KG, open order WEB-N\d+, value index \d+, context \d+ s old")
        run.wait_for(r"central: customer C-DEMO-[A-Z0-9]+ value index \d+ \(channels online, store")
        # 4. an RFID count: 3 tags read, 1 sold during the count -> 2 counted
        closed = run.wait_for(r"RFID: count demo-count-\d+ closed: COFFEE-1KG counted")
        figures = re.search(r"counted (\d+), expected (-?\d+), variance (-?\d+)", closed)
        assert figures is not None, closed
        counted, expected, variance = map(int, figures.groups())
        assert counted == 2, closed
        assert variance == counted - expected, closed
        # ... and at the door one alert, for the unsold tag only
        run.wait_for(r"RFID: exactly 1 exit alert, for the unsold bag")
        alerts = [ln for ln in run.lines if "alert: unsold_tag_exit" in ln]
        assert len(alerts) == 1, alerts
        assert "the unsold bag" in alerts[0], alerts
        # 5. the till refuses the expired pack and the recalled lot; central knows where
        run.wait_for(r"till-2 refused a scan: expired")
        run.wait_for(r"till-2 refused a scan: recalled")
        run.wait_for(r"till-2: the good tea is sold")
        run.wait_for(r"central: recall R-DEMO-\d+ found at DEMO1")
        run.wait_for(r"scenes: all told")
        stopped = [ln for ln in run.lines if re.search(r"scene '.*' stopped", ln)]
        assert not stopped, stopped
        assert run.proc.poll() is None  # the shop day goes on
    # A second run on the same state (ledger, central database, registered customer):
    # every scene plays again, with its own ids.
    with demo(state) as again:
        again.wait_for(r"scenes: all told", within_s=180)
        stopped = [ln for ln in again.lines if re.search(r"scene '.*' stopped", ln)]
        assert not stopped, stopped
        assert any("till: customer found: Nina Berg" in ln for ln in again.lines)
        assert any("RFID: exactly 1 exit alert" in ln for ln in again.lines)


@pytest.mark.timeout(200)
def test_offline_demo_shows_the_store_page_and_skips_the_central_scenes(tmp_path: Path
                                                                         ) -> None:
    with demo(tmp_path / "demo-state", "--offline") as run:
        run.wait_for(r"store page:   http://127\.0\.0\.1:\d+/")
        run.wait_for(r"scenes: central is not running \(offline demo\)")
        run.wait_for(r"till T1: SALE recorded")  # and the shop day goes on
        assert not [ln for ln in run.lines if "central page:" in ln]


def test_a_failing_scene_is_told_and_the_demo_goes_on(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    async def refused() -> None:
        raise SceneFailed("central refused the order (422 invalid_line: no such SKU)")

    async def broken() -> None:
        raise KeyError("lines")

    async def main() -> None:
        await demo_scenes._scene("online order", refused)
        await demo_scenes._scene("RFID count", broken)

    asyncio.run(main())
    out = capsys.readouterr().out
    assert "scene 'online order' stopped: central refused the order (422 invalid_line" in out
    assert "scene 'RFID count' stopped: KeyError: 'lines'" in out


def test_a_cancelled_scene_is_not_swallowed() -> None:
    async def main() -> None:
        task = asyncio.create_task(demo_scenes._scene("slow", lambda: asyncio.sleep(60)))
        await asyncio.sleep(0.05)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
