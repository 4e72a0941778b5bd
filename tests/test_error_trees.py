"""Each package's exception tree: drawn truly in its root's docstring, every class raised
somewhere (a class nobody raises is dead weight in every ``except``), and the context
attributes the handlers read."""

from __future__ import annotations

from pathlib import Path

import pytest

import central.errors
import drivers.errors
import edge_agent.errors
import sync.errors
from tests.helpers.error_tree import constructed, drawn_tree, package_exceptions

ROOT = Path(__file__).resolve().parents[1]
TREES = [
    ("drivers", drivers.errors, "DriverError"),
    ("sync", sync.errors, "SyncError"),
    ("edge_agent", edge_agent.errors, "EdgeAgentError"),
    ("central", central.errors, "CentralError"),
]


@pytest.mark.parametrize(("package", "module", "root"), TREES, ids=[t[0] for t in TREES])
def test_the_drawn_tree_is_the_real_tree(package: str, module: object, root: str) -> None:
    drawn = drawn_tree(module.__doc__ or "", root)
    classes = package_exceptions(package)
    root_cls = classes[root]
    ours = {name for name, cls in classes.items() if issubclass(cls, root_cls)}
    assert ours <= set(drawn), f"not drawn: {sorted(ours - set(drawn))}"
    for name, parent in drawn.items():
        cls = classes.get(name) or getattr(sync.errors, name)
        if parent is None:
            continue
        assert parent in {b.__name__ for b in cls.__mro__[1:]}, f"{name} is not a {parent}"


@pytest.mark.parametrize(("package", "module", "root"), TREES, ids=[t[0] for t in TREES])
def test_every_exception_is_raised_somewhere(package: str, module: object, root: str) -> None:
    classes = package_exceptions(package)
    unraised = []
    for name, cls in classes.items():
        if cls is sync.errors.ConfigError:
            continue  # raised as its two subclasses (see the next test)
        subclasses_raised = any(other is not cls and issubclass(other, cls)
                                and constructed(ROOT / package, other.__name__)
                                for other in classes.values())
        if not constructed(ROOT / package, name) and not subclasses_raised:
            unraised.append(name)
    assert unraised == []


def test_config_error_is_defined_once_and_caught_by_each_root() -> None:
    for side, root in ((edge_agent.errors, edge_agent.errors.EdgeAgentError),
                       (central.errors, central.errors.CentralError)):
        exc = side.ConfigError("bad file", ["a: missing", "b: too big"])
        assert isinstance(exc, root)
        assert isinstance(exc, sync.errors.ConfigError)
        assert exc.problems == ["a: missing", "b: too big"]
        assert str(exc) == "bad file\n  - a: missing\n  - b: too big"
        assert "__init__" not in vars(side.ConfigError)  # no second definition


def test_central_errors_are_not_sync_errors() -> None:
    assert not issubclass(central.errors.StorageError, sync.errors.SyncError)
    err = central.errors.StorageError("SQLite: disk I/O error", backend="sqlite")
    assert err.backend == "sqlite"


def test_context_attributes() -> None:
    port = drivers.errors.PortError("read failed", port="/dev/ttyUSB0")
    assert port.port == "/dev/ttyUSB0"
    link = sync.errors.AuthenticationFailed("refused", operation="connect to h:1",
                                            reason_code=135)
    assert (link.operation, link.reason_code) == ("connect to h:1", 135)
    assert isinstance(link, sync.errors.LinkError)
    snap = sync.errors.SnapshotError("HTTP 503", url="http://c/s", status_code=503)
    assert (snap.url, snap.status_code) == ("http://c/s", 503)
