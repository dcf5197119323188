"""The pipeline store on DynamoDB (aiobotocore): pipelines, executions, cached step runs,
schedules and the execution events' outbox in one table, `<prefix>-pipelines`
(pipeline_layout.py has its items).

An execution is saved with one TransactWriteItems: the execution item, conditional on its
version, and the outbox items of its events. Of two engines planning the same event only one
transaction lands, and a crash keeps the state and its events together or neither, as in
the SQLite store. Pipelines and schedules change by conditional writes on their versions;
which write is refused, and with what error, is `stoker.core.pipelines.store_rules`'.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog

from stoker.adapters.aws import (
    AwsClients,
    AwsRequestRejected,
    AwsUnavailable,
    call,
    logged_retries,
)
from stoker.adapters.store import pipeline_layout as pl
from stoker.adapters.store.dynamodb import CONFLICT_RETRY
from stoker.adapters.store.pipeline_outbox import PipelineOutbox
from stoker.adapters.store.pipeline_pages import BatchReader, query_all
from stoker.core.cursors import time_key
from stoker.core.events import CloudEvent
from stoker.core.pipelines.caching import CachedRun
from stoker.core.pipelines.records import (
    ExecutionConflict,
    ExecutionNotFound,
    ExecutionPage,
    PipelineNotFound,
    ScheduleConflict,
    ScheduleNotFound,
    StoredExecution,
    StoredPipeline,
    StoredSchedule,
    Tag,
    cached_run_from_json,
    cached_run_to_json,
    check_execution_outbox,
    next_pipeline,
    next_timer,
    retag,
    schedule_from_json,
    schedule_to_json,
    state_from_json,
    state_to_json,
)
from stoker.core.pipelines.state import ExecutionState
from stoker.core.pipelines.store_rules import (
    execution_save_refusal,
    next_cursor,
    position_of,
    schedule_put_refusal,
)
from stoker.core.retry import RetryPolicy
from stoker.core.store_rules import StoreFailure, check_limit
from stoker.ports.store import OutboxEntry
from stoker.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import TransactWriteItemTypeDef

    from stoker.adapters.store.pipeline_layout import Item

log = structlog.get_logger("stoker.adapters.store.dynamodb_pipelines")

PUT_RACE = RetryPolicy(
    initial_delay_s=0.01, multiplier=2, max_delay_s=0.5, jitter=0.5, max_attempts=10
)
"""A pipeline put read a version another put replaced before its write: read again."""


class _PutRaced(Exception):
    """The pipeline item changed between the read and the conditional write."""


class DynamoDbPipelineStore:
    """Pipelines and their executions in `<prefix>-pipelines`, created with its indexes by
    `start()`. `client` hands the store a DynamoDB client made elsewhere (then `close`
    leaves it to its owner)."""

    def __init__(
        self,
        settings: Settings,
        *,
        table_prefix: str | None = None,
        client: DynamoDBClient | None = None,
    ) -> None:
        self._settings = settings
        self.table = pl.pipeline_table_name(table_prefix or settings.dynamodb_table_prefix)
        self._given = client
        self._clients: AwsClients | None = None
        self._db: DynamoDBClient | None = None
        # Definitions by content hash: immutable, so a copy read once serves for good.
        self._definitions: dict[str, str] = {}
        self._outbox = PipelineOutbox(lambda: self._client, self.table)

    async def start(self) -> None:
        if self._db is not None:
            return
        try:
            if self._given is not None:
                self._db = self._given
            else:
                self._clients = AwsClients(self._settings)
                self._db = await self._clients.dynamodb()
            await pl.ensure_pipeline_table(self._db, self.table)
        except BaseException:
            await self.close()
            raise
        log.info("dynamodb pipeline store ready", table=self.table)

    async def close(self) -> None:
        if self._clients is not None:
            await self._clients.close()
        self._clients = None
        self._db = None

    @property
    def _client(self) -> DynamoDBClient:
        if self._db is None:
            raise StoreFailure("the DynamoDB pipeline store is not started; call start() first")
        return self._db

    # -- pipelines --------------------------------------------------------------------------

    async def put_pipeline(
        self,
        name: str,
        *,
        team: str,
        definition: str,
        description: str | None,
        now: datetime,
        create_only: bool = False,
        tags: Sequence[Tag] | None = None,
    ) -> StoredPipeline:
        # A create that loses a race reads the winner's item on its next attempt, where
        # next_pipeline answers PipelineExists (create_only) or makes the update.
        return await self._rewrite_pipeline(
            "put_pipeline",
            name,
            lambda old: next_pipeline(
                old,
                name,
                team=team,
                definition=definition,
                description=description,
                now=now,
                create_only=create_only,
                tags=tags,
            ),
        )

    async def tag_pipeline(
        self, name: str, *, add: Sequence[Tag] = (), remove: Sequence[str] = ()
    ) -> StoredPipeline:
        def retagged(old: StoredPipeline | None) -> StoredPipeline:
            if old is None:
                raise PipelineNotFound(name)
            return retag(old, add=add, remove=remove)

        return await self._rewrite_pipeline("tag_pipeline", name, retagged)

    async def _rewrite_pipeline(
        self,
        operation: str,
        name: str,
        change: Callable[[StoredPipeline | None], StoredPipeline],
    ) -> StoredPipeline:
        """Read the pipeline's item, write `change(old)` on the condition that the item is
        still the one read (its version and record: tags change without a new version),
        and read again when another writer came first."""

        async def attempt() -> StoredPipeline:
            old_item = await self._get(pl.PIPELINE_PK, name)
            old = pl.pipeline_record(old_item) if old_item else None
            record = change(old)
            item = pl.pipeline_item(record)
            pl.check_size(item, field="definition", what=f"pipeline {name!r}")
            condition = pl.pipeline_unchanged(old_item)
            if not await self._conditional_put(operation, item, condition):
                raise _PutRaced(name)
            return record

        result: StoredPipeline = await PUT_RACE.call(
            attempt,
            retry_on=lambda error: isinstance(error, _PutRaced),
            before_sleep=logged_retries("pipeline changed while being put; retrying"),
        )
        return result

    async def get_pipeline(self, name: str) -> StoredPipeline:
        item = await self._get(pl.PIPELINE_PK, name)
        if item is None:
            raise PipelineNotFound(name)
        return pl.pipeline_record(item)

    async def list_pipelines(self, *, team: str | None = None) -> list[StoredPipeline]:
        items = await self._query_partition("list_pipelines", pl.PIPELINE_PK, team)
        return [pl.pipeline_record(item) for item in items]

    async def delete_pipeline(self, name: str) -> None:
        if not await self._conditional_delete("delete_pipeline", pl.PIPELINE_PK, name):
            raise PipelineNotFound(name)

    # -- executions -------------------------------------------------------------------------

    async def create_execution(
        self,
        state: ExecutionState,
        *,
        pipeline_version: int,
        definition: str,
        outbox: Sequence[tuple[str, CloudEvent]] = (),
    ) -> tuple[StoredExecution, bool]:
        check_execution_outbox(outbox)
        stored = StoredExecution(state, 1, pipeline_version, definition)
        hashed = await self._keep_definition(definition)
        item = pl.execution_item(stored, hashed)
        put: TransactWriteItemTypeDef = {
            "Put": {
                "TableName": self.table,
                "Item": item,
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        if await self._write_with_outbox("create_execution", put, outbox):
            return await self.get_execution(state.identity.execution_id), False
        return stored, True

    async def get_execution(self, execution_id: str) -> StoredExecution:
        item = await self._get(pl.execution_pk(execution_id), pl.EXECUTION_SK)
        if item is None:
            raise ExecutionNotFound(execution_id)
        return await self._execution(item)

    async def list_executions(self, pipeline_name: str) -> list[StoredExecution]:
        return await self._newest(pipeline_name, None, None)

    async def execution_page(
        self,
        pipeline_name: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
        oldest_first: bool = False,
    ) -> ExecutionPage:
        check_limit(limit)
        after = position_of(cursor) if cursor is not None else None
        found = await self._newest(pipeline_name, after, limit + 1, oldest_first=oldest_first)
        return ExecutionPage(found[:limit], next_cursor(found, limit))

    async def _newest(
        self,
        pipeline_name: str,
        after: tuple[str, str] | None,
        count: int | None,
        *,
        oldest_first: bool = False,
    ) -> list[StoredExecution]:
        """A pipeline's executions newest first (or oldest first), after the position
        `after` if given."""
        query = pl.executions_query(self.table, pipeline_name, after, oldest_first=oldest_first)
        items = await query_all(self._client, "list_executions", query, limit=count)
        return [await self._execution(item) for item in items]

    async def save_execution(
        self,
        state: ExecutionState,
        *,
        expected_version: int,
        outbox: Sequence[tuple[str, CloudEvent]] = (),
    ) -> StoredExecution:
        check_execution_outbox(outbox)
        execution_id = state.identity.execution_id
        raw = pl.pack(state_to_json(state))
        pl.check_value_size(raw, field="state", what=f"pipeline execution {execution_id!r}")
        sets = ["#state = :state", "#v = :next"]
        removes: list[str] = []
        values: Item = {
            ":state": {"B": raw},
            ":next": {"N": str(expected_version + 1)},
            ":expected": {"N": str(expected_version)},
        }
        due = next_timer(state)
        if due is not None:
            sets += ["d_pk = :due", "d_sk = :due_at"]
            values[":due"] = {"S": pl.DUE_PARTITION}
            values[":due_at"] = {"S": f"{time_key(due)}#{execution_id}"}
        else:
            removes += ["d_pk", "d_sk"]
        if state.status.terminal:
            removes += ["r_pk", "r_sk"]
        expression = "SET " + ", ".join(sets)
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        update: TransactWriteItemTypeDef = {
            "Update": {
                "TableName": self.table,
                "Key": {"pk": {"S": pl.execution_pk(execution_id)}, "sk": {"S": pl.EXECUTION_SK}},
                "UpdateExpression": expression,
                "ConditionExpression": "#v = :expected",
                "ExpressionAttributeNames": {"#state": "state", "#v": "version"},
                "ExpressionAttributeValues": values,
            }
        }
        if await self._write_with_outbox("save_execution", update, outbox):
            found = await self._get(pl.execution_pk(execution_id), pl.EXECUTION_SK)
            actual = int(found["version"]["N"]) if found else None
            raise execution_save_refusal(
                execution_id, expected_version, actual
            ) or ExecutionConflict(execution_id, expected_version, actual)
        # What the save did not write (fixed at creation), without the state it did.
        fixed = await call(
            "get_item",
            lambda: self._client.get_item(
                TableName=self.table,
                Key={"pk": {"S": pl.execution_pk(execution_id)}, "sk": {"S": pl.EXECUTION_SK}},
                ProjectionExpression="pipeline_version, #d",
                ExpressionAttributeNames={"#d": "definition"},
            ),
        )
        item = fixed["Item"]
        return StoredExecution(
            state,
            expected_version + 1,
            int(item["pipeline_version"]["N"]),
            await self._definition(item["definition"]["S"]),
        )

    async def running_executions(self, limit: int = 1000) -> list[str]:
        check_limit(limit)
        items = await query_all(
            self._client,
            "running_executions",
            {
                "TableName": self.table,
                "IndexName": pl.INDEX_RUNNING,
                "KeyConditionExpression": "r_pk = :r",
                "ExpressionAttributeValues": {":r": {"S": pl.RUNNING_PARTITION}},
            },
            limit=limit,
        )
        return [pl.execution_id_of(item) for item in items]

    async def due_executions(self, now: datetime, limit: int = 100) -> list[str]:
        check_limit(limit)
        # "$" sorts right after "#", so this bound takes every retry due at exactly `now`.
        items = await query_all(
            self._client,
            "due_executions",
            {
                "TableName": self.table,
                "IndexName": pl.INDEX_DUE,
                "KeyConditionExpression": "d_pk = :d AND d_sk < :bound",
                "ExpressionAttributeValues": {
                    ":d": {"S": pl.DUE_PARTITION},
                    ":bound": {"S": f"{time_key(now)}$"},
                },
            },
            limit=limit,
        )
        return [pl.execution_id_of(item) for item in items]

    # -- cached runs ------------------------------------------------------------------------

    async def record_cached_run(self, pipeline_name: str, key: str, run: CachedRun) -> None:
        item: Item = {
            "pk": {"S": pl.cache_pk(pipeline_name)},
            "sk": {"S": key},
            "ended": {"S": time_key(run.ended_at)},
            "run": {"B": cached_run_to_json(run)},
        }
        pl.check_size(item, field="properties", what=f"the cached run of {pipeline_name!r}")
        # The newest run per key wins: an older one arriving late leaves it alone.
        await self._conditional_put(
            "record_cached_run",
            item,
            {
                "ConditionExpression": "attribute_not_exists(pk) OR ended <= :ended",
                "ExpressionAttributeValues": {":ended": item["ended"]},
            },
        )

    async def cached_runs(self, pipeline_name: str, keys: Sequence[str]) -> dict[str, CachedRun]:
        wanted = [
            {"pk": {"S": pl.cache_pk(pipeline_name)}, "sk": {"S": key}}
            for key in dict.fromkeys(keys)
        ]
        items = await BatchReader(self._client, self.table).get(wanted)
        return {item["sk"]["S"]: cached_run_from_json(bytes(item["run"]["B"])) for item in items}

    # -- schedules --------------------------------------------------------------------------

    async def put_schedule(
        self, stored: StoredSchedule, *, expected_version: int | None
    ) -> StoredSchedule:
        item: Item = {
            "pk": {"S": pl.SCHEDULE_PK},
            "sk": {"S": stored.name},
            "team": {"S": stored.team},
            "version": {"N": str(stored.version)},
            "record": {"B": schedule_to_json(stored)},
        }
        condition: dict[str, Any] = (
            {"ConditionExpression": "attribute_not_exists(pk)"}
            if expected_version is None
            else {
                "ConditionExpression": "#v = :v AND team = :team",
                "ExpressionAttributeNames": {"#v": "version"},
                "ExpressionAttributeValues": {
                    ":v": {"N": str(expected_version)},
                    ":team": {"S": stored.team},
                },
            }
        )
        if not await self._conditional_put("put_schedule", item, condition):
            found = await self._get(pl.SCHEDULE_PK, stored.name)
            now = (int(found["version"]["N"]), found["team"]["S"]) if found else None
            raise schedule_put_refusal(
                stored.name, stored.team, expected_version, now
            ) or ScheduleConflict(stored.name)
        return stored

    async def get_schedule(self, name: str) -> StoredSchedule:
        item = await self._get(pl.SCHEDULE_PK, name)
        if item is None:
            raise ScheduleNotFound(name)
        return schedule_from_json(bytes(item["record"]["B"]))

    async def list_schedules(self, *, team: str | None = None) -> list[StoredSchedule]:
        items = await self._query_partition("list_schedules", pl.SCHEDULE_PK, team)
        return [schedule_from_json(bytes(item["record"]["B"])) for item in items]

    async def delete_schedule(self, name: str) -> None:
        if not await self._conditional_delete("delete_schedule", pl.SCHEDULE_PK, name):
            raise ScheduleNotFound(name)

    # -- outbox: `PipelineOutbox`'s ---------------------------------------------------------

    async def pending_outbox(self, limit: int = 100) -> list[OutboxEntry]:
        return await self._outbox.pending(limit)

    async def mark_published(self, entry_ids: Sequence[str]) -> None:
        await self._outbox.mark_published(entry_ids)

    # -- helpers ----------------------------------------------------------------------------

    async def _keep_definition(self, definition: str) -> str:
        """Store the definition by its hash (once per process and content) and return it."""
        hashed = pl.digest(definition)
        if hashed not in self._definitions:
            item: Item = {
                "pk": {"S": pl.definition_pk(hashed)},
                "sk": {"S": pl.DEF_SK},
                "definition": {"B": pl.pack(definition.encode())},
            }
            pl.check_size(item, field="definition", what="the pipeline definition")
            # Content-addressed: writing it again writes the same bytes.
            await call(
                "put definition", partial(self._client.put_item, TableName=self.table, Item=item)
            )
            self._definitions[hashed] = definition
        return hashed

    async def _definition(self, hashed: str) -> str:
        known = self._definitions.get(hashed)
        if known is not None:
            return known
        item = await self._get(pl.definition_pk(hashed), pl.DEF_SK)
        if item is None:
            raise StoreFailure(f"pipeline definition {hashed} is missing from {self.table}")
        text = pl.unpack(item["definition"]["B"]).decode()
        self._definitions[hashed] = text
        return text

    async def _execution(self, item: dict[str, Any]) -> StoredExecution:
        return StoredExecution(
            state_from_json(pl.unpack(item["state"]["B"])),
            int(item["version"]["N"]),
            int(item["pipeline_version"]["N"]),
            await self._definition(item["definition"]["S"]),
        )

    async def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        response = await call(
            "get_item",
            lambda: self._client.get_item(
                TableName=self.table,
                Key={"pk": {"S": pk}, "sk": {"S": sk}},
                ConsistentRead=True,
            ),
        )
        item = response.get("Item")
        return dict(item) if item else None

    async def _query_partition(self, what: str, pk: str, team: str | None) -> list[dict[str, Any]]:
        request: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ConsistentRead": True,
        }
        if team is not None:
            request["FilterExpression"] = "team = :team"
            request["ExpressionAttributeValues"][":team"] = {"S": team}
        return await query_all(self._client, what, request)

    async def _conditional_put(self, what: str, item: Item, condition: dict[str, Any]) -> bool:
        """Put the item if the condition holds; False (nothing written) if not."""
        try:
            await call(
                what,
                partial(self._client.put_item, TableName=self.table, Item=item, **condition),
            )
        except AwsRequestRejected as exc:
            if exc.code == "ConditionalCheckFailedException":
                return False
            raise
        return True

    async def _conditional_delete(self, what: str, pk: str, sk: str) -> bool:
        try:
            await call(
                what,
                lambda: self._client.delete_item(
                    TableName=self.table,
                    Key={"pk": {"S": pk}, "sk": {"S": sk}},
                    ConditionExpression="attribute_exists(pk)",
                ),
            )
        except AwsRequestRejected as exc:
            if exc.code == "ConditionalCheckFailedException":
                return False
            raise
        return True

    async def _write_with_outbox(
        self,
        what: str,
        first: TransactWriteItemTypeDef,
        outbox: Sequence[tuple[str, CloudEvent]],
    ) -> bool:
        """One transaction of `first` and the outbox items of `outbox`. True when the
        condition of `first` failed (nothing was written)."""
        outbox_puts, keys = self._outbox.puts(outbox)
        puts: list[TransactWriteItemTypeDef] = [first, *outbox_puts]
        try:
            await CONFLICT_RETRY.call(
                partial(self._send, what, puts),
                retry_on=_collided,
                before_sleep=logged_retries("transaction conflict; retrying", operation=what),
            )
        except AwsRequestRejected as exc:
            if "ConditionalCheckFailed" in exc.cancellations:
                return True
            raise
        self._outbox.remember(keys)
        return False

    async def _send(self, what: str, items: list[TransactWriteItemTypeDef]) -> None:
        # One token per try (see DynamoDbJobStore._send).
        token = uuid.uuid4().hex
        await call(
            what,
            lambda: self._client.transact_write_items(
                TransactItems=items, ClientRequestToken=token
            ),
        )


def _collided(error: BaseException) -> bool:
    return isinstance(error, AwsUnavailable) and error.code == "TransactionCanceledException"
