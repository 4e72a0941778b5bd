"""The message models' version check: only the JSON integer 1 is version 1 (pydantic
matches ``Literal[1]`` by equality, and ``true`` and ``1.0`` equal 1 in Python)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from sync.messages import CommandAck, EventAck

ACK = {"store": "S001", "epoch": "e1", "ts": "2026-11-25T09:00:00.000Z"}


@pytest.mark.parametrize("version", [True, 1.0, "1", 2])
def test_anything_but_the_integer_1_is_refused(version: Any) -> None:
    with pytest.raises(ValidationError, match="v"):
        EventAck.model_validate({**ACK, "v": version, "through_seq": 3})
    with pytest.raises(ValidationError, match="v"):
        CommandAck.model_validate({**ACK, "v": version, "through_cseq": 3})


def test_the_integer_1_is_version_1() -> None:
    assert EventAck.model_validate({**ACK, "v": 1, "through_seq": 3}).through_seq == 3
