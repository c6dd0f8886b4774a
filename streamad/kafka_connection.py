"""How streamad reaches a Kafka cluster: bootstrap servers and security settings, in one place.

Used by the ``kafka`` sink (its config extends :class:`KafkaConnection`, so the keys stay flat in pipeline.yaml:
``bootstrap_servers``, ``security_protocol``, ``sasl_*``, ``ssl_*``), by ``streamad serve --group`` (the control
topic's cluster: ``--bootstrap``, else the config's first ``kafka`` sink's connection) and by ``streamad alerts
tail`` (``--bootstrap``). :meth:`KafkaConnection.client_options` gives the keyword arguments of every kafka-python
client (``KafkaProducer``, ``KafkaConsumer``, ``KafkaAdminClient``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_validator

from streamad.errors import ConfigError
from streamad.redact import register_secret

__all__ = ["KafkaConnection"]


class KafkaConnection(BaseModel):
    """Bootstrap servers and security settings of a Kafka cluster (kafka-python's names; unknown keys are errors).

    Attributes:
        bootstrap_servers: ``host:port[,host:port...]`` of the brokers (spaces around entries are dropped).
        security_protocol: ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``.
        sasl_mechanism: ``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512``, ``OAUTHBEARER``, ``GSSAPI`` or none.
        sasl_plain_username, sasl_plain_password: SASL credentials (the password is a ``SecretStr``: masked in
            reprs and dumps, never logged).
        ssl_cafile, ssl_certfile, ssl_keyfile: PEM files of the CA, the client certificate and its key.
    """

    model_config = ConfigDict(extra="forbid")

    bootstrap_servers: str
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"] | None = None
    sasl_plain_username: str | None = None
    sasl_plain_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers(cls, v: str) -> str:
        hosts = [h.strip() for h in v.split(",")]
        if not all(hosts):
            raise ValueError(f"expected comma-separated host:port entries, got {v!r}")
        return ",".join(hosts)

    @classmethod
    def from_bootstrap(cls, bootstrap: str, where: str = "bootstrap_servers") -> "KafkaConnection":
        """A plain (``PLAINTEXT``, no credentials) connection to ``bootstrap`` (``host:port[,host:port...]``).

        Raises:
            ConfigError: an empty entry in ``bootstrap``; the message names ``where`` (e.g. ``--bootstrap``).
        """
        try:
            return cls(bootstrap_servers=bootstrap)
        except ValidationError:
            raise ConfigError(f"{where}: expected comma-separated host:port entries, got {bootstrap!r}") from None

    def connection(self) -> "KafkaConnection":
        """These settings alone, without the other fields of a config that extends this class (the sink's)."""
        return KafkaConnection(**{name: getattr(self, name) for name in KafkaConnection.model_fields})

    def servers(self) -> list[str]:
        """The bootstrap servers as a list of ``host:port``."""
        return self.bootstrap_servers.split(",")

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments of a kafka-python client: ``bootstrap_servers`` (a list) and every security setting
        that is set (``None`` ones are left out, so the client's defaults apply). The password is revealed here,
        and registered with :func:`streamad.redact.register_secret` so that no log line shows it."""
        options: dict[str, Any] = {"bootstrap_servers": self.servers()}
        for name in KafkaConnection.model_fields:
            value = getattr(self, name)
            if name == "bootstrap_servers" or value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
                register_secret(value)
            options[name] = value
        return options
