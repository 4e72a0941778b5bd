"""``edge-central`` as an operator meets it (issue 17): tables by default and --json,
-h and --version, help on every command, options before or after the command, the URL
in "cannot reach central", unknown stores refused, exit codes as edge-agent's, status
last_seq as the digest counts it."""

from __future__ import annotations

from pathlib import Path

import click
import orjson
from click.testing import CliRunner

from central.cli import main
from tests.central.conftest import FakeStore, event, wait_until
from tests.central.test_process import CentralProcess, central_process  # noqa: F401
from tests.helpers.mosquitto import Broker
from tests.helpers.ports import free_port


def paths(group: click.Group, prefix: str = "edge-central") -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    for name, command in sorted(group.commands.items()):
        out.append((f"{prefix} {name}", command))
        if isinstance(command, click.Group):
            out.extend(paths(command, f"{prefix} {name}"))
    return out


def test_help_version_and_help_on_every_command() -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["-h"]).exit_code == 0
    version = runner.invoke(main, ["--version"])
    assert version.exit_code == 0
    assert version.output.startswith("edge-central, version ")
    for path, command in paths(main):
        assert (command.help or "").strip(), f"{path} has no help"
        opts = {o for p in command.params for o in p.opts}
        assert {"--json", "--url", "--token-file"} <= opts, path


def test_unreachable_central_names_its_url_and_exits_3() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for argv in (["--url", url, "status"], ["status", "--url", url]):
        r = CliRunner().invoke(main, argv)
        assert r.exit_code == 3, r.output
        assert f"cannot reach central at {url}" in r.stderr


def test_a_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["check-config", "--config", str(tmp_path / "nope.toml")])
    assert r.exit_code == 2
    assert r.stderr.startswith("error: ")


def test_tables_by_default_unknown_store_refused_and_status_last_seq(
        central_process: CentralProcess, broker: Broker) -> None:  # noqa: F811
    runner = CliRunner()
    base = ["--url", central_process.url, "--token-file", str(central_process.admin_file)]
    store = FakeStore(broker.port, "S001")
    try:
        store.birth(last_seq=0, applied_cseq=0)
        store.send([event(s) for s in range(1, 6)])
        wait_until(lambda: any(a.get("through_seq") == 5 for a in store.acks))
        table = runner.invoke(main, [*base, "stock", "--store", "S001"])
        assert table.exit_code == 0, table.output
        assert "ON HAND" in table.stdout
        assert not table.stdout.lstrip().startswith("{")
        machine = runner.invoke(main, ["stock", "--store", "S001", "--json", *base])
        assert orjson.loads(machine.stdout)["stock"][0]["on_hand"] == -5
        # status counts what central applied, as the digest does, not the birth's 0
        status = runner.invoke(main, ["status", "--store", "S001", "--json", *base])
        data = orjson.loads(status.stdout)
        assert (data["last_seq"], data["birth_last_seq"]) == (5, 0)
        refused = runner.invoke(main, ["command", "adjust", *base, "--store", "NOPE",
                                       "--sku", "A-1", "--delta", "1"])
        assert refused.exit_code == 1
        assert "unknown store 'NOPE'" in refused.stderr
    finally:
        store.close()
