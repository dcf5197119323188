"""The DynamoDB store's API tokens, in the table `<prefix>-tokens` (see layout.py).

One partition holds every token, keyed by token id; the item keeps the token's record (the
digest of its secret, never the secret). Revoking rewrites the record with `revoked_at` and
marks the item `revoked`, on the condition that it is not marked yet.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from stoker.adapters.aws import AwsRequestRejected, call
from stoker.adapters.store import layout
from stoker.core.tokens import TokenNotFound, TokenRecord

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


class DynamoDbTokens:
    """TokenStore operations over the token table; `client` gives the started client."""

    def __init__(self, client: Callable[[], DynamoDBClient], table: str) -> None:
        self._client = client
        self.table = table

    async def start(self) -> None:
        await layout.ensure_token_table(self._client(), self.table)

    def _key(self, token_id: str) -> dict[str, Any]:
        return {"pk": {"S": layout.TOKEN_PARTITION}, "sk": {"S": token_id}}

    async def put_token(self, token: TokenRecord) -> None:
        try:
            await call(
                "put_item token",
                partial(
                    self._client().put_item,
                    TableName=self.table,
                    Item={**self._key(token.token_id), "record": {"S": token.model_dump_json()}},
                    ConditionExpression="attribute_not_exists(pk)",
                ),
            )
        except AwsRequestRejected as exc:
            if exc.code != "ConditionalCheckFailedException":
                raise

    async def get_token(self, token_id: str) -> TokenRecord | None:
        response = await call(
            "get_item token",
            partial(
                self._client().get_item,
                TableName=self.table,
                Key=self._key(token_id),
                ConsistentRead=True,
            ),
        )
        item = response.get("Item")
        return TokenRecord.model_validate_json(item["record"]["S"]) if item else None

    async def list_tokens(self) -> list[TokenRecord]:
        tokens: list[TokenRecord] = []
        start: Any = None
        while True:
            request: dict[str, Any] = {
                "TableName": self.table,
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": layout.TOKEN_PARTITION}},
                "ConsistentRead": True,
            }
            if start is not None:
                request["ExclusiveStartKey"] = start
            page = await call("query tokens", partial(self._client().query, **request))
            tokens += [TokenRecord.model_validate_json(i["record"]["S"]) for i in page["Items"]]
            start = page.get("LastEvaluatedKey")
            if start is None:
                return sorted(tokens, key=lambda t: (t.created_at, t.token_id))

    async def revoke_token(self, token_id: str, at: datetime) -> TokenRecord:
        token = await self.get_token(token_id)
        if token is None:
            raise TokenNotFound(token_id)
        if token.revoked_at is not None:
            return token
        revoked = token.model_copy(update={"revoked_at": at})
        try:
            await call(
                "update_item revoke token",
                partial(
                    self._client().update_item,
                    TableName=self.table,
                    Key=self._key(token_id),
                    UpdateExpression="SET #record = :record, revoked = :yes",
                    # A revocation meanwhile keeps its own time.
                    ConditionExpression="attribute_exists(pk) AND attribute_not_exists(revoked)",
                    ExpressionAttributeNames={"#record": "record"},
                    ExpressionAttributeValues={
                        ":record": {"S": revoked.model_dump_json()},
                        ":yes": {"BOOL": True},
                    },
                ),
            )
        except AwsRequestRejected as exc:
            if exc.code != "ConditionalCheckFailedException":
                raise
            current = await self.get_token(token_id)
            if current is None:
                raise TokenNotFound(token_id) from exc
            return current
        return revoked
