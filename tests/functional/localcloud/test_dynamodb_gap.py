"""The DynamoDB gap: concurrent requests to the local cloud lose no write.

The promote Lambda's race for PRODUCTION makes TransactWriteItems fail on a condition by design.
moto undoes a failed transaction by putting back a copy of each table taken when it started, so
without gaps._serialise_dynamodb a write another thread made in between disappears. Here the
writes of several threads race a stream of such failing transactions through the server, and
every write must still be there.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.config import Config

pytestmark = pytest.mark.slow  # a local cloud and a few hundred requests

TABLE = "dynamodb-gap-registry"
WRITERS = 4
WRITES_EACH = 50


@pytest.fixture
def ddb(localcloud_running: Any) -> Any:
    # One connection per concurrent caller, as the Lambdas and Step Functions tasks have.
    client = boto3.client("dynamodb", config=Config(max_pool_connections=WRITERS + 2))
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    # Bulk, so each copy moto takes for a transaction takes long enough to be raced.
    for start in range(0, 1000, 25):
        old = [{"pk": {"S": f"OLD#{i}"}, "pad": {"S": "x" * 100}} for i in range(start, start + 25)]
        client.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": i}} for i in old]})
    client.put_item(TableName=TABLE, Item={"pk": {"S": "PRODUCTION"}, "version": {"N": "1"}})
    return client


def _refused_claims(ddb: Any, stop: threading.Event) -> int:
    """Claim PRODUCTION for a version it does not name, as a losing promotion does; count them."""
    refused = 0
    while not stop.is_set():
        try:
            ddb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": TABLE,
                            "Item": {"pk": {"S": "PRODUCTION"}, "version": {"N": "3"}},
                            "ConditionExpression": "#v = :expected",
                            "ExpressionAttributeNames": {"#v": "version"},
                            "ExpressionAttributeValues": {":expected": {"N": "2"}},
                        }
                    }
                ]
            )
        except ddb.exceptions.TransactionCanceledException:
            refused += 1
    return refused


def _register(ddb: Any, writer: int) -> None:
    """What Register does per model: raise COUNTER, then put the MODEL# item."""
    for i in range(WRITES_EACH):
        ddb.update_item(
            TableName=TABLE,
            Key={"pk": {"S": "COUNTER"}},
            UpdateExpression="ADD last_version :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )
        ddb.put_item(TableName=TABLE, Item={"pk": {"S": f"MODEL#{writer}-{i}"}})


def test_failed_transactions_do_not_erase_concurrent_writes(ddb):
    stop = threading.Event()
    with ThreadPoolExecutor(WRITERS + 1) as pool:
        refusing = pool.submit(_refused_claims, ddb, stop)
        writers = [pool.submit(_register, ddb, w) for w in range(WRITERS)]
        for writer in writers:
            writer.result()  # a request broken by a racing copy raises here
        stop.set()
        assert refusing.result() > 0  # the race was run, not avoided
    items = []
    for page in ddb.get_paginator("scan").paginate(TableName=TABLE, ConsistentRead=True):
        items += page["Items"]
    models = {item["pk"]["S"] for item in items if item["pk"]["S"].startswith("MODEL#")}
    assert len(models) == WRITERS * WRITES_EACH
    counter = next(item for item in items if item["pk"]["S"] == "COUNTER")
    assert counter["last_version"]["N"] == str(WRITERS * WRITES_EACH)
    production = next(item for item in items if item["pk"]["S"] == "PRODUCTION")
    assert production["version"]["N"] == "1"
