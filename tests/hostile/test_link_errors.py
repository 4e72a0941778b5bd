"""A connection lost under a publish is a link error, never an authentication failure.

``sync.link.map_mqtt_error`` once read any ``MqttCodeError`` whose code is 4 or 5 as "broker
refused the credentials", but paho's *publish* codes share those numbers:
``MQTT_ERR_NO_CONN`` = 4 and ``MQTT_ERR_CONN_REFUSED`` = 5. StoreSync then waits the
backoff *cap* (``backoff_max``, 120 s by default) before reconnecting, as for a wrong
password: seen in the chaos runs as "publish to …/status: broker refused the credentials
([code:4] The client is not currently connected.)" after a proxy reset during the birth.
"""

from __future__ import annotations

import aiomqtt
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from sync.errors import AuthenticationFailed, LinkError
from sync.link import map_mqtt_error


def test_a_real_bad_password_is_an_authentication_failure() -> None:
    rc = ReasonCode(PacketTypes.CONNACK, "Bad user name or password")
    assert isinstance(map_mqtt_error(aiomqtt.MqttCodeError(rc), "connect"),
                      AuthenticationFailed)


@pytest.mark.parametrize("code", [mqtt.MQTT_ERR_NO_CONN, mqtt.MQTT_ERR_CONN_REFUSED])
def test_a_publish_on_a_lost_connection_is_not_an_authentication_failure(
        code: int) -> None:
    error = map_mqtt_error(aiomqtt.MqttCodeError(code, "publish"), "publish to x/status")
    assert isinstance(error, LinkError)
    assert not isinstance(error, AuthenticationFailed)


def test_an_mqtt311_connack_refusal_while_connecting_is_an_authentication_failure() -> None:
    error = map_mqtt_error(aiomqtt.MqttCodeError(5, "connect"), "connect", connecting=True)
    assert isinstance(error, AuthenticationFailed)


def test_a_publish_refused_by_the_acl_is_not_an_authentication_failure() -> None:
    rc = ReasonCode(PacketTypes.PUBACK, "Not authorized")
    assert not isinstance(map_mqtt_error(aiomqtt.MqttCodeError(rc), "publish"),
                          AuthenticationFailed)
