"""The Kafka connection settings shared by the kafka sink, ``serve --group`` and ``alerts tail`` (no broker)."""

from __future__ import annotations

import pytest

from streamad.config import load_config_text
from streamad.errors import ConfigError
from streamad.kafka_connection import KafkaConnection
from streamad.redact import redact
from streamad.runtime.group import GroupOptions
from streamad.sinks.kafka import KafkaSink

_CONFIG = """
operators: [{kind: smooth}]
sinks:
  - {kind: stdout}
  - kind: kafka
    bootstrap_servers: "k1:9092, k2:9092"
    topic: alerts
    security_protocol: SASL_SSL
    sasl_mechanism: SCRAM-SHA-512
    sasl_plain_username: streamad
    sasl_plain_password: ${KAFKA_PASSWORD}
    ssl_cafile: /etc/ca.pem
    client_id: camera-node
"""


def test_client_options_hold_servers_and_the_security_settings_that_are_set() -> None:
    c = KafkaConnection(bootstrap_servers=" a:1 ,b:2", security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                        sasl_plain_username="u", sasl_plain_password="pw-0123456")
    assert c.bootstrap_servers == "a:1,b:2"
    assert c.client_options() == {"bootstrap_servers": ["a:1", "b:2"], "security_protocol": "SASL_PLAINTEXT",
                                  "sasl_mechanism": "PLAIN", "sasl_plain_username": "u",
                                  "sasl_plain_password": "pw-0123456"}
    assert "pw-0123456" not in repr(c)
    assert redact("login failed with pw-0123456") == "login failed with ***"  # revealed, so registered
    assert KafkaConnection(bootstrap_servers="a:1").client_options() == {"bootstrap_servers": ["a:1"],
                                                                         "security_protocol": "PLAINTEXT"}


def test_bad_bootstrap_is_an_error_naming_where() -> None:
    with pytest.raises(ValueError, match="host:port"):
        KafkaConnection(bootstrap_servers="a:1,,b:2")
    with pytest.raises(ConfigError, match="--bootstrap: expected comma-separated host:port entries"):
        KafkaConnection.from_bootstrap("a:1, ", "--bootstrap")
    with pytest.raises(ValueError, match="extra"):
        KafkaConnection(bootstrap_servers="a:1", topic="t")


def test_sink_config_keys_stay_flat_and_the_connection_is_its_cluster_part(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_PASSWORD", "s3cret-pass")
    cfg = load_config_text(_CONFIG)
    sink = cfg.sinks[1]
    assert isinstance(sink, KafkaSink.Config) and isinstance(sink, KafkaConnection)
    assert (sink.topic, sink.client_id, sink.sasl_mechanism) == ("alerts", "camera-node", "SCRAM-SHA-512")
    conn = sink.connection()
    assert type(conn) is KafkaConnection
    assert conn.client_options() == {"bootstrap_servers": ["k1:9092", "k2:9092"], "security_protocol": "SASL_SSL",
                                     "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "streamad",
                                     "sasl_plain_password": "s3cret-pass", "ssl_cafile": "/etc/ca.pem"}


def test_group_uses_the_first_kafka_sinks_connection_unless_bootstrap_is_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_PASSWORD", "s3cret-pass")
    cfg = load_config_text(_CONFIG)
    from_sink = GroupOptions.from_config(cfg, "cams")
    assert from_sink.connection == cfg.sinks[1].connection()
    assert from_sink.topic == "streamad.control.cams"
    assert "s3cret-pass" not in repr(from_sink)
    given = GroupOptions.from_config(cfg, "cams", bootstrap="other:9092")
    assert given.connection.client_options() == {"bootstrap_servers": ["other:9092"],
                                                 "security_protocol": "PLAINTEXT"}
    with pytest.raises(ConfigError, match="--bootstrap"):
        GroupOptions.from_config(cfg, "cams", bootstrap=",")
