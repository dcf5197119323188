"""librdkafka's errors, translated once into stoker's.

Every confluent-kafka error the adapter meets goes through `translate`; nothing above the
adapter sees confluent-kafka's types. Whether another try may succeed is data on the
result (`retriable`): librdkafka's own flag, or one of the codes in `_UNAVAILABLE`.

confluent-kafka names librdkafka's local error codes (`RD_KAFKA_RESP_ERR__TRANSPORT`...)
with a leading underscore (`KafkaError._TRANSPORT`); they are its public constants, not
private attributes.
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from stoker.core.errors import InfrastructureUnavailable, StokerError

_UNAVAILABLE = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._MSG_TIMED_OUT,
        KafkaError._RESOLVE,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NETWORK_EXCEPTION,
        # A request in flight on a broker handle librdkafka replaced: the admin client, once
        # the first metadata names the brokers, can drop the bootstrap connection under it.
        KafkaError._DESTROY_BROKER,
    }
)
"""Codes that mean the broker was not reached or did not answer in time, whatever
librdkafka's retriable flag says."""

_COMMIT_REFUSED = frozenset(
    {
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError._ASSIGNMENT_LOST,
    }
)
"""A commit the group refused because it moved on: the records are delivered again."""

_LOGIN_REFUSED = frozenset(
    {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._SSL}
)
"""The brokers refused the client's SASL login or the TLS handshake failed (a certificate
not trusted, a host name it does not name): a configuration error, not an outage."""

TOPIC_ALREADY_EXISTS = KafkaError.TOPIC_ALREADY_EXISTS


class KafkaFailure(StokerError):
    """A Kafka request failed and another try will not help.

    doing: what stoker asked for ("publish to stoker.lifecycle", "commit"...).
    code / code_name: librdkafka's error code and its name.
    """

    def __init__(self, doing: str, code: int, code_name: str, detail: str) -> None:
        super().__init__(f"kafka {doing} failed: {code_name}: {detail}")
        self.doing = doing
        self.code = code
        self.code_name = code_name
        self.detail = detail

    @property
    def commit_refused(self) -> bool:
        """The group moved on (a rebalance): the records are delivered again, not lost."""
        return self.code in _COMMIT_REFUSED


class KafkaUnavailable(KafkaFailure, InfrastructureUnavailable):
    """The broker was not reached or did not answer in time: worth another try."""

    retriable = True


class KafkaLoginRefused(KafkaFailure):
    """The brokers refused the login (wrong SASL user, password or mechanism) or the TLS
    handshake failed (an untrusted certificate): check the STOKER_KAFKA_SASL_* and
    STOKER_KAFKA_SSL_* settings. Not retried."""

    def __str__(self) -> str:
        return (
            f"kafka {self.doing}: the brokers refused the login or the TLS handshake "
            f"({self.code_name}: {self.detail}); check the Kafka SASL and TLS settings"
        )


class LoginWatch:
    """librdkafka's `error_cb` for one client. A refused login or TLS handshake reaches the
    application only through this callback (the request that needed the connection just
    times out), so the client's probes ask the watch why a broker did not answer."""

    def __init__(self) -> None:
        self.refused: KafkaError | None = None

    def __call__(self, error: KafkaError) -> None:
        if error.code() in _LOGIN_REFUSED:
            self.refused = error

    def check(self, doing: str) -> None:
        """KafkaLoginRefused if the client was refused since it started."""
        refused = self.refused
        if refused is not None:
            raise KafkaLoginRefused(doing, refused.code(), refused.name(), refused.str())


def translate(error: KafkaError | KafkaException, doing: str) -> KafkaFailure:
    """The stoker error for a librdkafka one (raise it `from` the original)."""
    err = kafka_error_of(error)
    if err.code() in _LOGIN_REFUSED:
        return KafkaLoginRefused(doing, err.code(), err.name(), err.str())
    kind = KafkaUnavailable if err.retriable() or err.code() in _UNAVAILABLE else KafkaFailure
    return kind(doing, err.code(), err.name(), err.str())


def kafka_error_of(error: KafkaError | KafkaException) -> KafkaError:
    """The KafkaError a KafkaException carries (a generic failure if it carries none)."""
    if isinstance(error, KafkaError):
        return error
    inner = error.args[0] if error.args else None
    if isinstance(inner, KafkaError):
        return inner
    return KafkaError(KafkaError._FAIL, str(error))
