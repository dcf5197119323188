"""The DynamoDB store's shared capacity: slots and leases (the CapacityStore port), in the
job table (see layout.py).

| item    | pk                  | sk            | attributes                                 |
|---------|---------------------|---------------|--------------------------------------------|
| slot    | SLOTS               | J#<job id>    | instance_type, attempt, owner, claimed_at  |
| count   | SLOTCOUNT           | <type>        | used                                       |
| lease   | LEASE               | <name>        | owner, expires_key, expires_at             |

A claim reads the type's count and the jobs' slot items (one strongly consistent
BatchGetItem), then writes in one TransactWriteItems: the count raised by the new slots on
the condition that it is still what was read, each new slot item on the condition that it
does not exist, each moved slot on the condition that it is still as read. A release deletes
slot items as read and lowers their counts the same way. A transaction refused because
another claimer got there first is planned again from a fresh read, so the count always
equals the slot items and never passes the cap. None of these items has an index key or
the `event` kind, so the indexes and the stream consumers pass over them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from stoker.adapters.aws import AwsRequestRejected, AwsUnavailable, call
from stoker.adapters.store.slot_rules import (
    SlotWrite,
    check_claim,
    check_ttl,
    frees,
    plan_claims,
)
from stoker.core.cursors import time_key
from stoker.core.errors import InfrastructureUnavailable
from stoker.core.retry import RetryPolicy
from stoker.ports.capacity import HeldSlot, Lease, SlotClaim, SlotsClaimed

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import TransactWriteItemTypeDef

SLOT_PARTITION = "SLOTS"
COUNT_PARTITION = "SLOTCOUNT"
LEASE_PARTITION = "LEASE"
KIND_SLOT = "slot"
MAX_CLAIMS = 98
"""Claims planned in one transaction: DynamoDB takes 100 items, one is the count."""
MAX_RELEASES = 50
"""Slots freed in one transaction: each may need its type's count beside it."""
RACE_RETRY = RetryPolicy(
    initial_delay_s=0.01, multiplier=2, max_delay_s=0.5, jitter=0.5, max_attempts=12
)
"""A claim or release that lost a race to another process is planned again this way."""


class LostRace(InfrastructureUnavailable):
    """Another process changed a count or a slot between the read and the write."""


def _slot_key(job_id: str) -> dict[str, Any]:
    return {"pk": {"S": SLOT_PARTITION}, "sk": {"S": f"J#{job_id}"}}


def _count_key(instance_type: str) -> dict[str, Any]:
    return {"pk": {"S": COUNT_PARTITION}, "sk": {"S": instance_type}}


def _held(item: dict[str, Any]) -> HeldSlot:
    return HeldSlot(
        instance_type=item["instance_type"]["S"],
        job_id=item["sk"]["S"][2:],
        attempt=int(item["attempt"]["N"]),
        owner=item["owner"]["S"],
        claimed_at=datetime.fromisoformat(item["claimed_at"]["S"]),
    )


def _lost(error: BaseException) -> bool:
    return isinstance(error, LostRace)


class DynamoDbSlots:
    """CapacityStore operations over the job table; `client` gives the started client."""

    def __init__(self, client: Callable[[], DynamoDBClient], table: str) -> None:
        self._client = client
        self.table = table

    # -- slots -----------------------------------------------------------------------------

    async def claim_slots(
        self,
        instance_type: str,
        cap: int,
        claims: Sequence[SlotClaim],
        *,
        owner: str,
        at: datetime,
        take_from: Collection[str] = (),
    ) -> SlotsClaimed:
        check_claim(instance_type, cap)
        if not claims:
            counts = await self._read([_count_key(instance_type)])
            return SlotsClaimed(in_use=_used(counts.get((COUNT_PARTITION, instance_type))))
        # One claim per job (BatchGetItem refuses a key twice); the first one counts.
        claims = list({claim.job_id: claim for claim in reversed(claims)}.values())[::-1]
        result = SlotsClaimed()
        in_use = 0
        for start in range(0, len(claims), MAX_CLAIMS):
            chunk = claims[start : start + MAX_CLAIMS]
            done = await RACE_RETRY.call(
                partial(
                    self._claim, instance_type, cap, chunk, owner=owner, at=at, take_from=take_from
                ),
                retry_on=_lost,
            )
            result.claimed.extend(done.claimed)
            result.held_elsewhere.update(done.held_elsewhere)
            in_use = done.in_use
        return SlotsClaimed(result.claimed, result.held_elsewhere, in_use)

    async def _claim(
        self,
        instance_type: str,
        cap: int,
        claims: Sequence[SlotClaim],
        *,
        owner: str,
        at: datetime,
        take_from: Collection[str],
    ) -> SlotsClaimed:
        items = await self._read(
            [_count_key(instance_type), *(_slot_key(c.job_id) for c in claims)]
        )
        seen_used = items.get((COUNT_PARTITION, instance_type))
        held = {
            slot.job_id: slot
            for slot in (_held(item) for (pk, _), item in items.items() if pk == SLOT_PARTITION)
        }
        plan = plan_claims(
            instance_type,
            cap,
            claims,
            held,
            in_use=_used(seen_used),
            owner=owner,
            at=at,
            take_from=take_from,
        )
        writes: list[TransactWriteItemTypeDef] = [
            self._put_slot(write.slot) if write.seen is None else self._move_slot(write)
            for write in plan.writes
        ]
        if plan.added:
            writes.append(self._count_change(instance_type, plan.added, seen_used))
        if writes:
            await self._transact("claim_slots", writes)
        return plan.result

    async def release_slots(self, releases: Sequence[SlotClaim]) -> int:
        upto: dict[str, int] = {}
        for release in releases:
            upto[release.job_id] = max(release.attempt, upto.get(release.job_id, -1))
        ids = list(upto)
        freed = 0
        for start in range(0, len(ids), MAX_RELEASES):
            chunk = {job_id: upto[job_id] for job_id in ids[start : start + MAX_RELEASES]}
            freed += await RACE_RETRY.call(partial(self._release, chunk), retry_on=_lost)
        return freed

    async def _release(self, upto: dict[str, int]) -> int:
        slots = await self._read([_slot_key(job_id) for job_id in upto])
        held = [_held(item) for item in slots.values()]
        freeing = [slot for slot in held if frees(slot, SlotClaim(slot.job_id, upto[slot.job_id]))]
        if not freeing:
            return 0
        per_type: dict[str, int] = defaultdict(int)
        for slot in freeing:
            per_type[slot.instance_type] += 1
        counts = await self._read([_count_key(kind) for kind in per_type])
        writes: list[TransactWriteItemTypeDef] = [
            {
                "Delete": {
                    "TableName": self.table,
                    "Key": _slot_key(slot.job_id),
                    "ConditionExpression": "attempt = :a AND #o = :o",
                    "ExpressionAttributeNames": {"#o": "owner"},
                    "ExpressionAttributeValues": {
                        ":a": {"N": str(slot.attempt)},
                        ":o": {"S": slot.owner},
                    },
                }
            }
            for slot in freeing
        ]
        writes += [
            self._count_change(kind, -n, counts.get((COUNT_PARTITION, kind)))
            for kind, n in per_type.items()
        ]
        await self._transact("release_slots", writes)
        return len(freeing)

    async def held_slots(self, instance_type: str | None = None) -> list[HeldSlot]:
        items = await self._query(SLOT_PARTITION, "J#")
        slots = [_held(item) for item in items]
        return [s for s in slots if instance_type is None or s.instance_type == instance_type]

    def _put_slot(self, slot: HeldSlot) -> TransactWriteItemTypeDef:
        return {
            "Put": {
                "TableName": self.table,
                "Item": {
                    **_slot_key(slot.job_id),
                    "kind": {"S": KIND_SLOT},
                    "instance_type": {"S": slot.instance_type},
                    "attempt": {"N": str(slot.attempt)},
                    "owner": {"S": slot.owner},
                    "claimed_at": {"S": slot.claimed_at.isoformat()},
                },
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def _move_slot(self, write: SlotWrite) -> TransactWriteItemTypeDef:
        """The slot moves to the claimed attempt and owner, on the condition that it is still
        as read (its instance type stays)."""
        slot, seen = write.slot, write.seen
        assert seen is not None
        return {
            "Update": {
                "TableName": self.table,
                "Key": _slot_key(slot.job_id),
                "UpdateExpression": "SET attempt = :a, #o = :o, claimed_at = :t",
                "ConditionExpression": "attempt = :seen_a AND #o = :seen_o",
                "ExpressionAttributeNames": {"#o": "owner"},
                "ExpressionAttributeValues": {
                    ":a": {"N": str(slot.attempt)},
                    ":o": {"S": slot.owner},
                    ":t": {"S": slot.claimed_at.isoformat()},
                    ":seen_a": {"N": str(seen.attempt)},
                    ":seen_o": {"S": seen.owner},
                },
            }
        }

    def _count_change(
        self, instance_type: str, delta: int, seen: dict[str, Any] | None
    ) -> TransactWriteItemTypeDef:
        """The type's count moved by `delta`, on the condition that it is still as read."""
        values: dict[str, Any] = {":n": {"N": str(_used(seen) + delta)}}
        if seen is None:
            condition = "attribute_not_exists(used)"
        else:
            condition = "used = :seen"
            values[":seen"] = {"N": str(_used(seen))}
        return {
            "Update": {
                "TableName": self.table,
                "Key": _count_key(instance_type),
                "UpdateExpression": "SET used = :n",
                "ConditionExpression": condition,
                "ExpressionAttributeValues": values,
            }
        }

    # -- leases ----------------------------------------------------------------------------

    async def take_lease(self, name: str, owner: str, *, now: datetime, ttl_s: float) -> bool:
        check_ttl(ttl_s)
        expires = now + timedelta(seconds=ttl_s)
        try:
            await call(
                "put_item lease",
                partial(
                    self._client().put_item,
                    TableName=self.table,
                    Item={
                        "pk": {"S": LEASE_PARTITION},
                        "sk": {"S": name},
                        "owner": {"S": owner},
                        "expires_key": {"S": time_key(expires)},
                        "expires_at": {"S": expires.isoformat()},
                    },
                    ConditionExpression=(
                        "attribute_not_exists(pk) OR #o = :o OR expires_key <= :now"
                    ),
                    ExpressionAttributeNames={"#o": "owner"},
                    ExpressionAttributeValues={":o": {"S": owner}, ":now": {"S": time_key(now)}},
                ),
            )
        except AwsRequestRejected as exc:
            if exc.code != "ConditionalCheckFailedException":
                raise
            return False
        return True

    async def leases(self, prefix: str) -> list[Lease]:
        items = await self._query(LEASE_PARTITION, prefix)
        return [
            Lease(
                item["sk"]["S"], item["owner"]["S"], datetime.fromisoformat(item["expires_at"]["S"])
            )
            for item in items
        ]

    async def drop_lease(self, name: str, owner: str) -> None:
        try:
            await call(
                "delete_item lease",
                partial(
                    self._client().delete_item,
                    TableName=self.table,
                    Key={"pk": {"S": LEASE_PARTITION}, "sk": {"S": name}},
                    ConditionExpression="#o = :o",
                    ExpressionAttributeNames={"#o": "owner"},
                    ExpressionAttributeValues={":o": {"S": owner}},
                ),
            )
        except AwsRequestRejected as exc:
            if exc.code != "ConditionalCheckFailedException":
                raise

    # -- requests --------------------------------------------------------------------------

    async def _transact(self, what: str, writes: list[TransactWriteItemTypeDef]) -> None:
        token = uuid.uuid4().hex
        try:
            await call(
                what,
                partial(
                    self._client().transact_write_items,
                    TransactItems=writes,
                    ClientRequestToken=token,
                ),
            )
        except AwsRequestRejected as exc:
            if "ConditionalCheckFailed" in exc.cancellations:
                raise LostRace(f"{what}: another process changed a slot first") from exc
            raise
        except AwsUnavailable as exc:
            if exc.code == "TransactionCanceledException":  # a collision: plan again
                raise LostRace(f"{what}: collided with another transaction") from exc
            raise

    async def _read(self, keys: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        """The items of `keys` that exist (strongly consistent), by (pk, sk); keys left
        unprocessed are asked for again."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        pending: list[Any] = keys
        for _ in range(RACE_RETRY.max_attempts):
            response = await call(
                "batch_get_item slots",
                partial(
                    self._client().batch_get_item,
                    RequestItems={self.table: {"Keys": pending, "ConsistentRead": True}},
                ),
            )
            for item in response.get("Responses", {}).get(self.table, []):
                found[(item["pk"]["S"], item["sk"]["S"])] = item
            unprocessed: Any = response.get("UnprocessedKeys", {})
            pending = unprocessed.get(self.table, {}).get("Keys", [])
            if not pending:
                return found
            await asyncio.sleep(RACE_RETRY.initial_delay_s)
        raise LostRace(f"batch_get_item slots: {len(pending)} keys left unprocessed")

    async def _query(self, partition: str, prefix: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        condition = "pk = :pk" + (" AND begins_with(sk, :prefix)" if prefix else "")
        values: dict[str, Any] = {":pk": {"S": partition}}
        if prefix:
            values[":prefix"] = {"S": prefix}
        while True:
            request: dict[str, Any] = {
                "TableName": self.table,
                "KeyConditionExpression": condition,
                "ExpressionAttributeValues": values,
                "ConsistentRead": True,
            }
            if start is not None:
                request["ExclusiveStartKey"] = start
            response = await call("query slots", partial(self._client().query, **request))
            items.extend(response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if start is None:
                return items


def _used(item: dict[str, Any] | None) -> int:
    return int(item["used"]["N"]) if item is not None and "used" in item else 0
