"""The transactional send: the output's partition is the caller's, the transaction the
source partition's."""

from __future__ import annotations

from types import SimpleNamespace
from unittest.mock import AsyncMock, Mock

from faust.transport.consumer import TransactionManager

from stoker.stream.publish import TransactionalOutputs


def _app_in_transaction(producer: AsyncMock) -> SimpleNamespace:
    manager = Mock(spec=TransactionManager)
    manager.producer = producer
    return SimpleNamespace(
        in_transaction=True,
        consumer=SimpleNamespace(transactions=manager),
        conf=SimpleNamespace(id="duplicates"),
        assignor=SimpleNamespace(group_for_topic=lambda topic: 0),
    )


async def test_an_output_without_a_partition_goes_by_key_in_the_sources_transaction() -> None:
    producer = AsyncMock()
    await TransactionalOutputs(_app_in_transaction(producer)).send(
        "scores", b"pair-1", b"{}", source=("pairs", 3)
    )
    producer.send.assert_awaited_once_with(
        "scores", b"pair-1", b"{}", None, None, None, transactional_id="duplicates-0-3"
    )


async def test_an_output_with_a_partition_keeps_it() -> None:
    producer = AsyncMock()
    await TransactionalOutputs(_app_in_transaction(producer)).send(
        "other", b"pair-1", b"0.9", source=("pairs", 3), partition=1
    )
    producer.send.assert_awaited_once_with(
        "other", b"pair-1", b"0.9", 1, None, None, transactional_id="duplicates-0-3"
    )
