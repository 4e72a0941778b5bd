"""A doctor check's result (``ok``, ``warn``, ``fail`` or ``skip``, with a plain-language
fix) and the worst status of a run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    pass



Status = Literal["ok", "warn", "fail", "skip"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def passed(name: str, detail: str) -> CheckResult:
    return CheckResult(name, "ok", detail)


def worst(results: list[CheckResult]) -> Status:
    order: dict[Status, int] = {"skip": 0, "ok": 1, "warn": 2, "fail": 3}
    return max((r.status for r in results), key=lambda s: order[s], default="ok")
