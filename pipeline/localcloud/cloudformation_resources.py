"""Resource handlers of the local cloud's CloudFormation: each type is created, updated and
deleted through the service's own API, as CloudFormation does on AWS.

A handler calls the local cloud over HTTP with boto3 (the x-moto-account-id header names the
stack's account), so a stack-created resource lands in the backend the API reads and is in
exactly the state the same API calls would leave it in: a stack state machine is in the
Step Functions backend that runs executions, a bucket's EventBridge switch is what
PutBucketNotificationConfiguration stores, and every service validates its input as it does
for any other caller (an invalid state machine definition fails its resource, as on AWS).

Only moto's missing APIs are filled in directly on the backend (Glue UpdateJob; the OIDC
provider's client id list). A property a handler does not know fails the resource with a
message naming it, instead of being dropped. Types without a handler here fall back to
moto's own CloudFormation model classes (MotoModel).
"""

from __future__ import annotations

import contextlib
import io
import json
import string
import threading
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from moto.moto_api._internal import mock_random

# What AWS's CloudFormation reports as HandlerErrorCode for the service error codes we meet.
ALREADY_EXISTS_CODES = frozenset(
    {
        "AlreadyExistsException",
        "BucketAlreadyExists",
        "BucketAlreadyOwnedByYou",
        "EntityAlreadyExists",
        "ResourceAlreadyExistsException",
        "ResourceConflictException",
        "ResourceInUseException",
        "StateMachineAlreadyExists",
    }
)
NOT_FOUND_CODES = frozenset(
    {
        "404",
        "EntityNotFoundException",
        "NoSuchBucket",
        "NoSuchEntity",
        "NotFound",
        "NotFoundException",
        "ResourceNotFoundException",
        "StateMachineDoesNotExist",
    }
)
INVALID_REQUEST_CODES = frozenset(
    {
        "InvalidArn",
        "InvalidDefinition",
        "InvalidInputException",
        "InvalidParameterValue",
        "InvalidParameterValueException",
        "InvalidRequest",
        "MalformedPolicyDocument",
        "ValidationError",
        "ValidationException",
    }
)

_clients: dict[tuple[str, str, str, str], Any] = {}
_clients_lock = threading.Lock()
_session: Any = None


class ResourceError(Exception):
    """A resource could not be provisioned; the message is the stack event's reason."""


@dataclass
class Provisioned:
    physical_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    native: Any = None  # the moto object, for types that fall back to moto's models


@dataclass
class Context:
    """Who is asking: the stack, the logical resource and where to reach the services."""

    account_id: str
    region: str
    stack_name: str
    stack_id: str
    logical_id: str
    resource_type: str
    endpoint: str

    @property
    def partition(self) -> str:
        from moto.utilities.utils import get_partition

        return get_partition(self.region)

    def client(self, service: str) -> Any:
        key = (service, self.account_id, self.region, self.endpoint)
        with _clients_lock:
            if any(cached[3] != self.endpoint for cached in _clients):
                _clients.clear()  # a new local cloud (tests start one each): drop the old pools
            if key not in _clients:
                _clients[key] = _new_client(service, self.account_id, self.region, self.endpoint)
            return _clients[key]

    @staticmethod
    def suffix() -> str:
        return "".join(
            mock_random.choice(string.ascii_uppercase + string.digits) for _ in range(12)
        )

    def name(self, max_length: int = 64, lower: bool = False) -> str:
        """A physical name as CloudFormation generates one: stack-logical-RANDOM."""
        suffix = self.suffix()
        head = f"{self.stack_name}-{self.logical_id}"[: max_length - len(suffix) - 1]
        generated = f"{head.rstrip('-')}-{suffix}"
        return generated.lower() if lower else generated


def _new_client(service: str, account_id: str, region: str, endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    global _session
    if _session is None:  # one session: each service model is loaded once per process
        _session = boto3.session.Session()
    client = _session.client(
        service,
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id="local",
        aws_secret_access_key="local",
        # One attempt: a local error is final, and retries would only slow a failing deploy.
        config=Config(retries={"total_max_attempts": 1}),
    )

    def name_account(request: Any, **_: Any) -> None:
        request.headers["x-moto-account-id"] = account_id

    client.meta.events.register("before-sign.*.*", name_account)
    return client


def error_reason(exc: Exception, resource_type: str, identifier: str | None) -> str:
    """The ResourceStatusReason CloudFormation writes for a failed handler call."""
    from botocore.exceptions import ClientError, ParamValidationError

    if isinstance(exc, ResourceError):
        return str(exc)
    if isinstance(exc, ParamValidationError):
        return f"Properties validation failed for resource: {exc}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = error.get("Message") or code
        if code in ALREADY_EXISTS_CODES and exc.operation_name.startswith("Create"):
            return (
                f"Resource of type '{resource_type}' with identifier '{identifier}' already exists."
            )
        meta = exc.response.get("ResponseMetadata", {})
        service = resource_type.split("::")[1] if resource_type.count("::") == 2 else "AWS"
        return (
            f'Resource handler returned message: "{message} (Service: {service}, Status Code: '
            f'{meta.get("HTTPStatusCode", 400)}, Request ID: {meta.get("RequestId", uuid.uuid4())})" '
            f"(RequestToken: {uuid.uuid4()}, HandlerErrorCode: {_handler_code(code)})"
        )
    return f"Internal Failure: {type(exc).__name__}: {exc}"


def _handler_code(code: str) -> str:
    if code in ALREADY_EXISTS_CODES:
        return "AlreadyExists"
    if code in NOT_FOUND_CODES:
        return "NotFound"
    if code in INVALID_REQUEST_CODES:
        return "InvalidRequest"
    if "AccessDenied" in code:
        return "AccessDenied"
    return "GeneralServiceException"


def already_exists(resource_type: str, identifier: str) -> ResourceError:
    return ResourceError(
        f"Resource of type '{resource_type}' with identifier '{identifier}' already exists."
    )


def _is(exc: Exception, codes: frozenset[str]) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError) and str(exc.response["Error"].get("Code")) in codes


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() == "true"


def _camel(value: Any) -> Any:
    """CloudFormation's PascalCase keys as the camelCase the Step Functions API uses."""
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel(v) for v in value]
    return value


def _pick(props: dict[str, Any], mapping: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """API keyword arguments from properties: {Property: (ApiName, converter)}."""
    return {
        api: convert(props[prop]) if convert else props[prop]
        for prop, (api, convert) in mapping.items()
        if prop in props
    }


def _changed(old: dict[str, Any], new: dict[str, Any], keys: tuple[str, ...]) -> bool:
    return any(old.get(k) != new.get(k) for k in keys)


def _tag_map(tags: Any) -> dict[str, str]:
    if isinstance(tags, dict):
        return {str(k): str(v) for k, v in tags.items()}
    return {t["Key"]: str(t["Value"]) for t in tags or []}


class Handler:
    """One resource type; subclasses set the class attributes and the three operations."""

    resource_type: ClassVar[str]
    properties: ClassVar[frozenset[str]] = frozenset()
    attributes: ClassVar[frozenset[str] | None] = frozenset()
    replace_on: ClassVar[tuple[str, ...]] = ()
    name_property: ClassVar[str | None] = None

    def check(self, props: dict[str, Any]) -> None:
        unknown = sorted(set(props) - self.properties)
        if unknown:
            raise ResourceError(
                f"Properties {unknown} of {self.resource_type} are not supported by the local "
                "cloud. Fix: add them to its handler in pipeline/localcloud/cloudformation_resources.py"
            )

    def create(self, ctx: Context, props: dict[str, Any]) -> Provisioned:
        raise NotImplementedError

    def update(
        self, ctx: Context, current: Provisioned, old: dict[str, Any], new: dict[str, Any]
    ) -> Provisioned:
        raise NotImplementedError

    def delete(self, ctx: Context, current: Provisioned, props: dict[str, Any]) -> None:
        raise NotImplementedError

    def undo_on_error(
        self, ctx: Context, made: Provisioned, props: dict[str, Any], step: Callable[[], Any]
    ) -> None:
        """Run the configuration steps of a create; on failure delete what was made, so a
        failed create leaves nothing behind that the rollback cannot see."""
        try:
            step()
        except Exception:
            with contextlib.suppress(Exception):
                self.delete(ctx, made, props)
            raise

    def getatt(self, current: Provisioned, attribute: str) -> Any:
        if attribute not in current.attributes:
            raise ResourceError(
                f"Template error: resource does not support attribute type {attribute} in Fn::GetAtt"
            )
        return current.attributes[attribute]


# ---------------------------------------------------------------- S3


class Bucket(Handler):
    resource_type = "AWS::S3::Bucket"
    properties = frozenset(
        {
            "BucketName",
            "BucketEncryption",
            "PublicAccessBlockConfiguration",
            "VersioningConfiguration",
            "NotificationConfiguration",
            "Tags",
        }
    )
    attributes = frozenset(
        {"Arn", "DomainName", "RegionalDomainName", "DualStackDomainName", "WebsiteURL"}
    )
    replace_on = ("BucketName",)
    name_property = "BucketName"

    def create(self, ctx: Context, props: dict[str, Any]) -> Provisioned:
        s3 = ctx.client("s3")
        name = props.get("BucketName") or ctx.name(63, lower=True)
        try:
            s3.head_bucket(Bucket=name)
        except Exception as exc:
            if not _is(exc, NOT_FOUND_CODES):
                raise
        else:
            raise already_exists(self.resource_type, name)
        location = {} if ctx.region == "us-east-1" else {"LocationConstraint": ctx.region}
        s3.create_bucket(
            Bucket=name, **({"CreateBucketConfiguration": location} if location else {})
        )
        made = self._provisioned(ctx, name)
        self.undo_on_error(ctx, made, props, lambda: self._configure(s3, name, {}, props))
        return made

    def update(self, ctx, current, old, new):
        self._configure(ctx.client("s3"), current.physical_id, old, new)
        return self._provisioned(ctx, current.physical_id)

    def delete(self, ctx, current, props):
        try:
            ctx.client("s3").delete_bucket(Bucket=current.physical_id)
        except Exception as exc:
            if not _is(exc, NOT_FOUND_CODES):
                raise

    def _provisioned(self, ctx: Context, name: str) -> Provisioned:
        region = ctx.region
        return Provisioned(
            name,
            {
                "Arn": f"arn:{ctx.partition}:s3:::{name}",
                "DomainName": f"{name}.s3.amazonaws.com",
                "RegionalDomainName": f"{name}.s3.{region}.amazonaws.com",
                "DualStackDomainName": f"{name}.s3.dualstack.{region}.amazonaws.com",
                "WebsiteURL": f"http://{name}.s3-website-{region}.amazonaws.com",
            },
        )

    def _configure(self, s3: Any, name: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        if _changed(old, new, ("BucketEncryption",)):
            if "BucketEncryption" in new:
                rules = [
                    {
                        "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                        **(
                            {"BucketKeyEnabled": _bool(rule["BucketKeyEnabled"])}
                            if "BucketKeyEnabled" in rule
                            else {}
                        ),
                    }
                    for rule in new["BucketEncryption"]["ServerSideEncryptionConfiguration"]
                ]
                s3.put_bucket_encryption(
                    Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules}
                )
            else:
                s3.delete_bucket_encryption(Bucket=name)
        if _changed(old, new, ("PublicAccessBlockConfiguration",)):
            if "PublicAccessBlockConfiguration" in new:
                block = {k: _bool(v) for k, v in new["PublicAccessBlockConfiguration"].items()}
                s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block)
            else:
                s3.delete_public_access_block(Bucket=name)
        if _changed(old, new, ("VersioningConfiguration",)):
            status = (new.get("VersioningConfiguration") or {}).get("Status")
            if status or old.get("VersioningConfiguration"):
                # A bucket that was versioned can only be suspended, never unversioned again.
                s3.put_bucket_versioning(
                    Bucket=name, VersioningConfiguration={"Status": status or "Suspended"}
                )
        if _changed(old, new, ("NotificationConfiguration",)):
            s3.put_bucket_notification_configuration(
                Bucket=name,
                NotificationConfiguration=notification_configuration(
                    new.get("NotificationConfiguration") or {}
                ),
            )
        if _changed(old, new, ("Tags",)):
            if new.get("Tags"):
                tags = [{"Key": k, "Value": v} for k, v in _tag_map(new["Tags"]).items()]
                s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tags})
            else:
                s3.delete_bucket_tagging(Bucket=name)


def notification_configuration(props: dict[str, Any]) -> dict[str, Any]:
    """AWS::S3::Bucket NotificationConfiguration as PutBucketNotificationConfiguration takes it."""

    def filter_of(config: dict[str, Any]) -> dict[str, Any]:
        rules = ((config.get("Filter") or {}).get("S3Key") or {}).get("Rules")
        return {"Filter": {"Key": {"FilterRules": rules}}} if rules else {}

    api: dict[str, Any] = {}
    bridge = props.get("EventBridgeConfiguration")
    if bridge and _bool(bridge.get("EventBridgeEnabled", True)):
        api["EventBridgeConfiguration"] = {}
    for prop, key, target, arn in (
        ("LambdaConfigurations", "LambdaFunctionConfigurations", "Function", "LambdaFunctionArn"),
        ("QueueConfigurations", "QueueConfigurations", "Queue", "QueueArn"),
        ("TopicConfigurations", "TopicConfigurations", "Topic", "TopicArn"),
    ):
        if props.get(prop):
            api[key] = [
                {arn: config[target], "Events": [config["Event"]], **filter_of(config)}
                for config in props[prop]
            ]
    return api


class BucketPolicy(Handler):
    resource_type = "AWS::S3::BucketPolicy"
    properties = frozenset({"Bucket", "PolicyDocument"})
    replace_on = ("Bucket",)

    def create(self, ctx, props):
        ctx.client("s3").put_bucket_policy(
            Bucket=props["Bucket"], Policy=_json(props["PolicyDocument"])
        )
        return Provisioned(props["Bucket"])

    def update(self, ctx, current, old, new):
        return self.create(ctx, new)

    def delete(self, ctx, current, props):
        try:
            ctx.client("s3").delete_bucket_policy(Bucket=current.physical_id)
        except Exception as exc:
            if not _is(exc, NOT_FOUND_CODES):
                raise


# ---------------------------------------------------------------- IAM


class Role(Handler):
    resource_type = "AWS::IAM::Role"
    properties = frozenset(
        {
            "RoleName",
            "AssumeRolePolicyDocument",
            "Path",
            "Description",
            "MaxSessionDuration",
            "PermissionsBoundary",
            "Policies",
            "ManagedPolicyArns",
            "Tags",
        }
    )
    attributes = frozenset({"Arn", "RoleId"})
    replace_on = ("RoleName", "Path")
    name_property = "RoleName"

    def create(self, ctx, props):
        iam = ctx.client("iam")
        name = props.get("RoleName") or ctx.name(64)
        role = iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=_json(props["AssumeRolePolicyDocument"]),
            Path=props.get("Path", "/"),
            **_pick(
                props,
                {
                    "Description": ("Description", None),
                    "MaxSessionDuration": ("MaxSessionDuration", int),
                    "PermissionsBoundary": ("PermissionsBoundary", None),
                    "Tags": ("Tags", None),
                },
            ),
        )["Role"]
        made = Provisioned(name, {"Arn": role["Arn"], "RoleId": role["RoleId"]})
        self.undo_on_error(ctx, made, props, lambda: self._policies(iam, name, {}, props))
        return made

    def update(self, ctx, current, old, new):
        iam, name = ctx.client("iam"), current.physical_id
        if _changed(old, new, ("AssumeRolePolicyDocument",)):
            iam.update_assume_role_policy(
                RoleName=name, PolicyDocument=_json(new["AssumeRolePolicyDocument"])
            )
        if _changed(old, new, ("Description", "MaxSessionDuration")):
            iam.update_role(
                RoleName=name,
                Description=new.get("Description", ""),
                MaxSessionDuration=int(new.get("MaxSessionDuration", 3600)),
            )
        if _changed(old, new, ("PermissionsBoundary",)):
            if new.get("PermissionsBoundary"):
                iam.put_role_permissions_boundary(
                    RoleName=name, PermissionsBoundary=new["PermissionsBoundary"]
                )
            else:
                iam.delete_role_permissions_boundary(RoleName=name)
        if _changed(old, new, ("Tags",)):
            old_tags, new_tags = _tag_map(old.get("Tags")), _tag_map(new.get("Tags"))
            if set(old_tags) - set(new_tags):
                iam.untag_role(RoleName=name, TagKeys=sorted(set(old_tags) - set(new_tags)))
            if new_tags:
                iam.tag_role(
                    RoleName=name, Tags=[{"Key": k, "Value": v} for k, v in new_tags.items()]
                )
        self._policies(iam, name, old, new)
        role = iam.get_role(RoleName=name)["Role"]
        return Provisioned(name, {"Arn": role["Arn"], "RoleId": role["RoleId"]})

    def delete(self, ctx, current, props):
        iam, name = ctx.client("iam"), current.physical_id
        try:
            for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
                iam.delete_role_policy(RoleName=name, PolicyName=policy)
            for policy in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
                iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
            iam.delete_role(RoleName=name)
        except Exception as exc:
            if not _is(exc, NOT_FOUND_CODES):
                raise

    @staticmethod
    def _policies(iam: Any, name: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        old_inline = {p["PolicyName"]: p["PolicyDocument"] for p in old.get("Policies") or []}
        new_inline = {p["PolicyName"]: p["PolicyDocument"] for p in new.get("Policies") or []}
        for policy, document in new_inline.items():
            if old_inline.get(policy) != document:
                iam.put_role_policy(
                    RoleName=name, PolicyName=policy, PolicyDocument=_json(document)
                )
        for policy in set(old_inline) - set(new_inline):
            iam.delete_role_policy(RoleName=name, PolicyName=policy)
        old_managed = set(old.get("ManagedPolicyArns") or [])
        new_managed = set(new.get("ManagedPolicyArns") or [])
        for arn in sorted(new_managed - old_managed):
            iam.attach_role_policy(RoleName=name, PolicyArn=arn)
        for arn in sorted(old_managed - new_managed):
            iam.detach_role_policy(RoleName=name, PolicyArn=arn)


class OIDCProvider(Handler):
    resource_type = "AWS::IAM::OIDCProvider"
    properties = frozenset({"Url", "ClientIdList", "ThumbprintList", "Tags"})
    attributes = frozenset({"Arn"})
    replace_on = ("Url",)

    def create(self, ctx, props):
        iam = ctx.client("iam")
        arn = f"arn:{ctx.partition}:iam::{ctx.account_id}:oidc-provider/{props['Url'].removeprefix('https://')}"
        if arn in {
            p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
        }:
            raise already_exists(self.resource_type, arn)
        arn = iam.create_open_id_connect_provider(
            Url=props["Url"],
            ClientIDList=props.get("ClientIdList", []),
            **_pick(props, {"ThumbprintList": ("ThumbprintList", None), "Tags": ("Tags", None)}),
        )["OpenIDConnectProviderArn"]
        return Provisioned(arn, {"Arn": arn})

    def update(self, ctx, current, old, new):
        iam, arn = ctx.client("iam"), current.physical_id
        if _changed(old, new, ("ThumbprintList",)):
            iam.update_open_id_connect_provider_thumbprint(
                OpenIDConnectProviderArn=arn, ThumbprintList=new.get("ThumbprintList", [])
            )
        if _changed(old, new, ("ClientIdList",)):
            # moto 5.2.5 has no Add/RemoveClientIDToOpenIDConnectProvider: set the list itself.
            from moto.iam.models import iam_backends

            provider = iam_backends[ctx.account_id][ctx.partition].get_open_id_connect_provider(arn)
            provider.client_id_list = list(new.get("ClientIdList", []))
        if _changed(old, new, ("Tags",)):
            removed = sorted(set(_tag_map(old.get("Tags"))) - set(_tag_map(new.get("Tags"))))
            if removed:
                iam.untag_open_id_connect_provider(OpenIDConnectProviderArn=arn, TagKeys=removed)
            if new.get("Tags"):
                iam.tag_open_id_connect_provider(OpenIDConnectProviderArn=arn, Tags=new["Tags"])
        return Provisioned(arn, {"Arn": arn})

    def delete(self, ctx, current, props):
        ctx.client("iam").delete_open_id_connect_provider(
            OpenIDConnectProviderArn=current.physical_id
        )


# ---------------------------------------------------------------- DynamoDB


class Table(Handler):
    resource_type = "AWS::DynamoDB::Table"
    properties = frozenset(
        {
            "TableName",
            "AttributeDefinitions",
            "KeySchema",
            "BillingMode",
            "ProvisionedThroughput",
            "GlobalSecondaryIndexes",
            "LocalSecondaryIndexes",
            "StreamSpecification",
            "SSESpecification",
            "PointInTimeRecoverySpecification",
            "TimeToLiveSpecification",
            "DeletionProtectionEnabled",
            "TableClass",
            "Tags",
        }
    )
    attributes = frozenset({"Arn", "StreamArn"})
    replace_on = ("TableName", "KeySchema", "LocalSecondaryIndexes")
    name_property = "TableName"

    def create(self, ctx, props):
        ddb = ctx.client("dynamodb")
        name = props.get("TableName") or ctx.name(255)
        ddb.create_table(
            TableName=name,
            AttributeDefinitions=props["AttributeDefinitions"],
            KeySchema=props["KeySchema"],
            BillingMode=props.get("BillingMode", "PROVISIONED"),
            **self._optional(props),
            **_pick(
                props,
                {
                    "GlobalSecondaryIndexes": ("GlobalSecondaryIndexes", _throughput_in),
                    "LocalSecondaryIndexes": ("LocalSecondaryIndexes", None),
                    "Tags": ("Tags", None),
                },
            ),
        )
        made = Provisioned(name)
        self.undo_on_error(ctx, made, props, lambda: self._continuous(ddb, name, {}, props))
        return self._provisioned(ddb, name)

    def update(self, ctx, current, old, new):
        ddb, name = ctx.client("dynamodb"), current.physical_id
        if _changed(old, new, ("GlobalSecondaryIndexes",)):
            raise ResourceError(
                "Updating GlobalSecondaryIndexes is not supported by the local cloud; "
                "rename the table to replace it"
            )
        optional = self._optional(new)
        changes = {
            key: optional.get(key, _DISABLED.get(key))
            for key in _UPDATABLE
            if _changed(old, new, (key,)) and (key in optional or key in _DISABLED)
        }
        if changes or _changed(old, new, ("BillingMode",)):
            ddb.update_table(
                TableName=name, BillingMode=new.get("BillingMode", "PROVISIONED"), **changes
            )
        self._continuous(ddb, name, old, new)
        if _changed(old, new, ("Tags",)):
            arn = ddb.describe_table(TableName=name)["Table"]["TableArn"]
            removed = sorted(set(_tag_map(old.get("Tags"))) - set(_tag_map(new.get("Tags"))))
            if removed:
                ddb.untag_resource(ResourceArn=arn, TagKeys=removed)
            if new.get("Tags"):
                ddb.tag_resource(ResourceArn=arn, Tags=new["Tags"])
        return self._provisioned(ddb, name)

    def delete(self, ctx, current, props):
        try:
            ctx.client("dynamodb").delete_table(TableName=current.physical_id)
        except Exception as exc:
            if not _is(exc, NOT_FOUND_CODES):
                raise

    @staticmethod
    def _optional(props: dict[str, Any]) -> dict[str, Any]:
        api: dict[str, Any] = {}
        if "ProvisionedThroughput" in props:
            api["ProvisionedThroughput"] = {
                k: int(v) for k, v in props["ProvisionedThroughput"].items()
            }
        if "StreamSpecification" in props:
            api["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        if "SSESpecification" in props:
            sse = props["SSESpecification"]
            api["SSESpecification"] = {
                "Enabled": _bool(sse.get("SSEEnabled", False)),
                **{k: sse[k] for k in ("SSEType", "KMSMasterKeyId") if k in sse},
            }
        if "DeletionProtectionEnabled" in props:
            api["DeletionProtectionEnabled"] = _bool(props["DeletionProtectionEnabled"])
        if "TableClass" in props:
            api["TableClass"] = props["TableClass"]
        return api

    @staticmethod
    def _continuous(ddb: Any, name: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        if _changed(old, new, ("PointInTimeRecoverySpecification",)):
            enabled = _bool(
                (new.get("PointInTimeRecoverySpecification") or {}).get(
                    "PointInTimeRecoveryEnabled", False
                )
            )
            ddb.update_continuous_backups(
                TableName=name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": enabled},
            )
        if _changed(old, new, ("TimeToLiveSpecification",)):
            spec = new.get("TimeToLiveSpecification") or old["TimeToLiveSpecification"]
            enabled = "TimeToLiveSpecification" in new and _bool(spec.get("Enabled", False))
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={
                    "AttributeName": spec["AttributeName"],
                    "Enabled": enabled,
                },
            )

    @staticmethod
    def _provisioned(ddb: Any, name: str) -> Provisioned:
        table = ddb.describe_table(TableName=name)["Table"]
        attributes = {"Arn": table["TableArn"]}
        if table.get("LatestStreamArn"):
            attributes["StreamArn"] = table["LatestStreamArn"]
        return Provisioned(name, attributes)


_UPDATABLE = (
    "ProvisionedThroughput",
    "StreamSpecification",
    "SSESpecification",
    "DeletionProtectionEnabled",
    "TableClass",
)
# What UpdateTable takes to turn a setting off when its property is removed.
_DISABLED: dict[str, Any] = {
    "StreamSpecification": {"StreamEnabled": False},
    "SSESpecification": {"Enabled": False},
    "DeletionProtectionEnabled": False,
}


def _throughput_in(indexes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            **index,
            **(
                {
                    "ProvisionedThroughput": {
                        k: int(v) for k, v in index["ProvisionedThroughput"].items()
                    }
                }
                if "ProvisionedThroughput" in index
                else {}
            ),
        }
        for index in indexes
    ]


# ---------------------------------------------------------------- SNS


_TOPIC_ATTRIBUTES = {
    "DisplayName": "DisplayName",
    "KmsMasterKeyId": "KmsMasterKeyId",
    "ContentBasedDeduplication": "ContentBasedDeduplication",
    "SignatureVersion": "SignatureVersion",
    "TracingConfig": "TracingConfig",
}


class Topic(Handler):
    resource_type = "AWS::SNS::Topic"
    properties = frozenset({"TopicName", "FifoTopic", "Subscription", "Tags", *_TOPIC_ATTRIBUTES})
    attributes = frozenset({"TopicArn", "TopicName"})
    replace_on = ("TopicName", "FifoTopic")
    name_property = "TopicName"

    def create(self, ctx, props):
        sns = ctx.client("sns")
        fifo = _bool(props.get("FifoTopic", False))
        name = props.get("TopicName") or ctx.name(256 - 5 * fifo) + (".fifo" if fifo else "")
        arn = f"arn:{ctx.partition}:sns:{ctx.region}:{ctx.account_id}:{name}"
        try:
            sns.get_topic_attributes(TopicArn=arn)
        except Exception as exc:
            if not _is(exc, NOT_FOUND_CODES):
                raise
        else:
            raise already_exists(self.resource_type, arn)
        attributes = {
            api: _text(props[prop]) for prop, api in _TOPIC_ATTRIBUTES.items() if prop in props
        }
        if fifo:
            attributes["FifoTopic"] = "true"
        arn = sns.create_topic(
            Name=name, Attributes=attributes, **_pick(props, {"Tags": ("Tags", None)})
        )["TopicArn"]
        made = Provisioned(arn, {"TopicArn": arn, "TopicName": name})

        def subscribe() -> None:
            for subscription in props.get("Subscription") or []:
                sns.subscribe(
                    TopicArn=arn,
                    Protocol=subscription["Protocol"],
                    Endpoint=subscription["Endpoint"],
                )

        self.undo_on_error(ctx, made, props, subscribe)
        return made

    def update(self, ctx, current, old, new):
        sns, arn = ctx.client("sns"), current.physical_id
        for prop, api in _TOPIC_ATTRIBUTES.items():
            if _changed(old, new, (prop,)):
                sns.set_topic_attributes(
                    TopicArn=arn, AttributeName=api, AttributeValue=_text(new.get(prop, ""))
                )
        if _changed(old, new, ("Subscription",)):
            wanted = {(s["Protocol"], s["Endpoint"]) for s in new.get("Subscription") or []}
            before = {(s["Protocol"], s["Endpoint"]) for s in old.get("Subscription") or []}
            existing = sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]
            for sub in existing:
                if (sub["Protocol"], sub["Endpoint"]) in before - wanted:
                    sns.unsubscribe(SubscriptionArn=sub["SubscriptionArn"])
            for protocol, endpoint in sorted(wanted - before):
                sns.subscribe(TopicArn=arn, Protocol=protocol, Endpoint=endpoint)
        if _changed(old, new, ("Tags",)):
            removed = sorted(set(_tag_map(old.get("Tags"))) - set(_tag_map(new.get("Tags"))))
            if removed:
                sns.untag_resource(ResourceArn=arn, TagKeys=removed)
            if new.get("Tags"):
                sns.tag_resource(ResourceArn=arn, Tags=new["Tags"])
        return current

    def delete(self, ctx, current, props):
        ctx.client("sns").delete_topic(TopicArn=current.physical_id)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


_SUBSCRIPTION_ATTRIBUTES = (
    "FilterPolicy",
    "FilterPolicyScope",
    "RawMessageDelivery",
    "RedrivePolicy",
    "DeliveryPolicy",
)


class Subscription(Handler):
    resource_type = "AWS::SNS::Subscription"
    properties = frozenset(
        {"TopicArn", "Protocol", "Endpoint", "Region", *_SUBSCRIPTION_ATTRIBUTES}
    )
    attributes = frozenset({"Arn"})
    replace_on = ("TopicArn", "Protocol", "Endpoint", "Region")

    def create(self, ctx, props):
        arn = ctx.client("sns").subscribe(
            TopicArn=props["TopicArn"],
            Protocol=props["Protocol"],
            Endpoint=props["Endpoint"],
            Attributes={k: _text(props[k]) for k in _SUBSCRIPTION_ATTRIBUTES if k in props},
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
        return Provisioned(arn, {"Arn": arn})

    def update(self, ctx, current, old, new):
        sns = ctx.client("sns")
        for name in _SUBSCRIPTION_ATTRIBUTES:
            if _changed(old, new, (name,)):
                sns.set_subscription_attributes(
                    SubscriptionArn=current.physical_id,
                    AttributeName=name,
                    AttributeValue=_text(new.get(name, "")),
                )
        return current

    def delete(self, ctx, current, props):
        ctx.client("sns").unsubscribe(SubscriptionArn=current.physical_id)


# ---------------------------------------------------------------- Lambda


_FUNCTION_CONFIGURATION = {
    "Role": ("Role", None),
    "Handler": ("Handler", None),
    "Description": ("Description", None),
    "Timeout": ("Timeout", int),
    "MemorySize": ("MemorySize", int),
    "Runtime": ("Runtime", None),
    "Layers": ("Layers", None),
    "TracingConfig": ("TracingConfig", None),
    "DeadLetterConfig": ("DeadLetterConfig", None),
    "EphemeralStorage": ("EphemeralStorage", lambda v: {"Size": int(v["Size"])}),
    "KmsKeyArn": ("KMSKeyArn", None),
    "VpcConfig": ("VpcConfig", None),
    "LoggingConfig": ("LoggingConfig", None),
    "ImageConfig": ("ImageConfig", None),
    "Environment": (
        "Environment",
        lambda v: {"Variables": {k: _text(x) for k, x in (v.get("Variables") or {}).items()}},
    ),
}
# Inline ZipFile code goes into this file of the deployment package, per runtime family.
_INLINE_FILES = {"python": "index.py", "nodejs": "index.js"}


class Function(Handler):
    resource_type = "AWS::Lambda::Function"
    properties = frozenset(
        {
            "FunctionName",
            "Code",
            "PackageType",
            "Architectures",
            "ReservedConcurrentExecutions",
            "Tags",
            *_FUNCTION_CONFIGURATION,
        }
    )
    attributes = frozenset({"Arn"})
    replace_on = ("FunctionName", "PackageType")
    name_property = "FunctionName"

    def create(self, ctx, props):
        lam = ctx.client("lambda")
        name = props.get("FunctionName") or ctx.name(64)
        try:
            lam.get_function(FunctionName=name)
        except Exception as exc:
            if not _is(exc, NOT_FOUND_CODES):
                raise
        else:
            raise already_exists(self.resource_type, name)
        arn = lam.create_function(
            FunctionName=name,
            Code=self._code(ctx, props),
            **_pick(props, _FUNCTION_CONFIGURATION),
            **_pick(
                props,
                {
                    "PackageType": ("PackageType", None),
                    "Architectures": ("Architectures", None),
                    "Tags": ("Tags", _tag_map),
                },
            ),
        )["FunctionArn"]
        made = Provisioned(name, {"Arn": arn})
        if "ReservedConcurrentExecutions" in props:
            self.undo_on_error(
                ctx,
                made,
                props,
                lambda: lam.put_function_concurrency(
                    FunctionName=name,
                    ReservedConcurrentExecutions=int(props["ReservedConcurrentExecutions"]),
                ),
            )
        return made

    def update(self, ctx, current, old, new):
        lam, name = ctx.client("lambda"), current.physical_id
        if _changed(old, new, ("Code", "Architectures")):
            lam.update_function_code(
                FunctionName=name,
                **self._code(ctx, new),
                **_pick(new, {"Architectures": ("Architectures", None)}),
            )
        if _changed(old, new, tuple(_FUNCTION_CONFIGURATION)):
            configuration = _pick(new, _FUNCTION_CONFIGURATION)
            if "Environment" not in configuration and "Environment" in old:
                configuration["Environment"] = {"Variables": {}}
            lam.update_function_configuration(FunctionName=name, **configuration)
        if _changed(old, new, ("ReservedConcurrentExecutions",)):
            if "ReservedConcurrentExecutions" in new:
                lam.put_function_concurrency(
                    FunctionName=name,
                    ReservedConcurrentExecutions=int(new["ReservedConcurrentExecutions"]),
                )
            else:
                lam.delete_function_concurrency(FunctionName=name)
        if _changed(old, new, ("Tags",)):
            arn = current.attributes["Arn"]
            removed = sorted(set(_tag_map(old.get("Tags"))) - set(_tag_map(new.get("Tags"))))
            if removed:
                lam.untag_resource(Resource=arn, TagKeys=removed)
            if new.get("Tags"):
                lam.tag_resource(Resource=arn, Tags=_tag_map(new["Tags"]))
        return current

    def delete(self, ctx, current, props):
        try:
            ctx.client("lambda").delete_function(FunctionName=current.physical_id)
        except Exception as exc:
            if not _is(exc, NOT_FOUND_CODES):
                raise

    @staticmethod
    def _code(ctx: Context, props: dict[str, Any]) -> dict[str, Any]:
        code = props.get("Code") or {}
        if "ZipFile" in code:
            runtime = str(props.get("Runtime", "python"))
            filename = next((f for p, f in _INLINE_FILES.items() if runtime.startswith(p)), None)
            if filename is None:
                raise ResourceError(
                    f"Code.ZipFile is only valid for Python and Node.js runtimes, not {runtime}"
                )
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as archive:
                archive.writestr(filename, code["ZipFile"])
            return {"ZipFile": buffer.getvalue()}
        if "ImageUri" in code:
            return {"ImageUri": code["ImageUri"]}
        if "S3Bucket" not in code or "S3Key" not in code:
            raise ResourceError(
                "Properties validation failed for resource: Code needs S3Bucket and S3Key, ZipFile or ImageUri"
            )
        # moto 5.2.5's CreateFunction/UpdateFunctionCode accept a missing S3 key and deploy
        # empty code; Lambda refuses it, and so does its CloudFormation resource.
        extra = {"VersionId": code["S3ObjectVersion"]} if "S3ObjectVersion" in code else {}
        try:
            ctx.client("s3").head_object(Bucket=code["S3Bucket"], Key=code["S3Key"], **extra)
        except Exception as exc:
            if not _is(exc, NOT_FOUND_CODES | {"NoSuchKey"}):
                raise
            missing = "NoSuchKey. S3 Error Message: The specified key does not exist."
            if _bucket_missing(ctx, code["S3Bucket"]):
                missing = "NoSuchBucket. S3 Error Message: The specified bucket does not exist"
            raise ResourceError(
                f'Resource handler returned message: "Error occurred while GetObject. S3 Error '
                f'Code: {missing} (Service: Lambda, Status Code: 400, Request ID: {uuid.uuid4()})" '
                f"(RequestToken: {uuid.uuid4()}, HandlerErrorCode: InvalidRequest)"
            ) from None
        return {
            "S3Bucket": code["S3Bucket"],
            "S3Key": code["S3Key"],
            **({"S3ObjectVersion": code["S3ObjectVersion"]} if extra else {}),
        }


def _bucket_missing(ctx: Context, bucket: str) -> bool:
    try:
        ctx.client("s3").head_bucket(Bucket=bucket)
    except Exception:
        return True
    return False


# ---------------------------------------------------------------- Glue


_JOB_FIELDS = {
    "Role": ("Role", None),
    "Command": ("Command", None),
    "Description": ("Description", None),
    "LogUri": ("LogUri", None),
    "DefaultArguments": ("DefaultArguments", lambda v: {k: _text(x) for k, x in v.items()}),
    "NonOverridableArguments": (
        "NonOverridableArguments",
        lambda v: {k: _text(x) for k, x in v.items()},
    ),
    "Connections": ("Connections", None),
    "MaxRetries": ("MaxRetries", int),
    "AllocatedCapacity": ("AllocatedCapacity", int),
    "MaxCapacity": ("MaxCapacity", float),
    "Timeout": ("Timeout", int),
    "GlueVersion": ("GlueVersion", None),
    "WorkerType": ("WorkerType", None),
    "NumberOfWorkers": ("NumberOfWorkers", int),
    "ExecutionProperty": (
        "ExecutionProperty",
        lambda v: {k: int(x) for k, x in v.items()},
    ),
    "NotificationProperty": (
        "NotificationProperty",
        lambda v: {k: int(x) for k, x in v.items()},
    ),
    "SecurityConfiguration": ("SecurityConfiguration", None),
    "ExecutionClass": ("ExecutionClass", None),
}
# FakeJob attribute for each UpdateJob field; UpdateJob overwrites the whole definition.
_JOB_ATTRIBUTES = {
    "Role": "role",
    "Command": "command",
    "Description": "description",
    "LogUri": "log_uri",
    "DefaultArguments": "default_arguments",
    "NonOverridableArguments": "non_overridable_arguments",
    "Connections": "connections",
    "MaxRetries": "max_retries",
    "AllocatedCapacity": "allocated_capacity",
    "MaxCapacity": "max_capacity",
    "Timeout": "timeout",
    "GlueVersion": "glue_version",
    "WorkerType": "worker_type",
    "NumberOfWorkers": "number_of_workers",
    "ExecutionProperty": "execution_property",
    "NotificationProperty": "notification_property",
    "SecurityConfiguration": "security_configuration",
    "ExecutionClass": "execution_class",
}


class GlueJob(Handler):
    """AWS::Glue::Job, which moto's CloudFormation lacks. Ref is the job name; no GetAtt."""

    resource_type = "AWS::Glue::Job"
    properties = frozenset({"Name", "Tags", *_JOB_FIELDS})
    attributes = frozenset()
    replace_on = ("Name",)
    name_property = "Name"

    def create(self, ctx, props):
        glue = ctx.client("glue")
        name = props.get("Name") or ctx.name(255)
        try:
            glue.get_job(JobName=name)
        except Exception as exc:
            if not _is(exc, NOT_FOUND_CODES):
                raise
        else:
            raise already_exists(self.resource_type, name)
        glue.create_job(
            Name=name, **_pick(props, _JOB_FIELDS), **_pick(props, {"Tags": ("Tags", _tag_map)})
        )
        return Provisioned(name)

    def update(self, ctx, current, old, new):
        # moto 5.2.5 has no UpdateJob: apply its semantics (the new definition replaces the
        # old one, fields left out go back to their defaults) to the stored job.
        from moto.core.utils import utcnow
        from moto.glue.models import glue_backends

        backend = glue_backends[ctx.account_id][ctx.region]
        job = backend.get_job(current.physical_id)
        fields = _pick(new, _JOB_FIELDS)
        for api, attribute in _JOB_ATTRIBUTES.items():
            default: Any = {} if api in ("DefaultArguments", "ExecutionProperty") else None
            setattr(job, attribute, fields.get(api, default))
        job.execution_class = job.execution_class or "STANDARD"
        job.last_modified_on = utcnow()
        if _changed(old, new, ("Tags",)):
            glue = ctx.client("glue")
            removed = sorted(set(_tag_map(old.get("Tags"))) - set(_tag_map(new.get("Tags"))))
            if removed:
                glue.untag_resource(ResourceArn=job.arn, TagsToRemove=removed)
            if new.get("Tags"):
                glue.tag_resource(ResourceArn=job.arn, TagsToAdd=_tag_map(new["Tags"]))
        return current

    def delete(self, ctx, current, props):
        ctx.client("glue").delete_job(JobName=current.physical_id)


# ---------------------------------------------------------------- Step Functions


class StateMachine(Handler):
    """Created, updated in place (same ARN) and deleted through the Step Functions API, so the
    machine is in the backend that describes and runs it; DefinitionSubstitutions applied."""

    resource_type = "AWS::StepFunctions::StateMachine"
    properties = frozenset(
        {
            "StateMachineName",
            "StateMachineType",
            "Definition",
            "DefinitionString",
            "DefinitionS3Location",
            "DefinitionSubstitutions",
            "RoleArn",
            "LoggingConfiguration",
            "TracingConfiguration",
            "EncryptionConfiguration",
            "Tags",
        }
    )
    attributes = frozenset({"Arn", "Name", "StateMachineRevisionId"})
    replace_on = ("StateMachineName", "StateMachineType")
    name_property = "StateMachineName"

    def create(self, ctx, props):
        sfn = ctx.client("stepfunctions")
        name = props.get("StateMachineName") or f"{ctx.logical_id}-{ctx.suffix()}"
        arn = f"arn:{ctx.partition}:states:{ctx.region}:{ctx.account_id}:stateMachine:{name}"
        try:
            sfn.describe_state_machine(stateMachineArn=arn)
        except Exception as exc:
            if not _is(exc, NOT_FOUND_CODES):
                raise
        else:
            raise already_exists(self.resource_type, arn)
        arn = sfn.create_state_machine(
            name=name,
            definition=definition(ctx, props),
            roleArn=props["RoleArn"],
            type=props.get("StateMachineType", "STANDARD"),
            tags=[{"key": k, "value": v} for k, v in _tag_map(props.get("Tags")).items()],
            **self._configuration(props),
        )["stateMachineArn"]
        return self._provisioned(sfn, arn)

    def update(self, ctx, current, old, new):
        sfn, arn = ctx.client("stepfunctions"), current.physical_id
        sfn.update_state_machine(
            stateMachineArn=arn,
            definition=definition(ctx, new),
            roleArn=new["RoleArn"],
            **{k: v for k, v in self._configuration(new).items() if k != "encryptionConfiguration"},
        )
        if _changed(old, new, ("Tags",)):
            removed = sorted(set(_tag_map(old.get("Tags"))) - set(_tag_map(new.get("Tags"))))
            if removed:
                sfn.untag_resource(resourceArn=arn, tagKeys=removed)
            if new.get("Tags"):
                sfn.tag_resource(
                    resourceArn=arn,
                    tags=[{"key": k, "value": v} for k, v in _tag_map(new["Tags"]).items()],
                )
        return self._provisioned(sfn, arn)

    def delete(self, ctx, current, props):
        ctx.client("stepfunctions").delete_state_machine(stateMachineArn=current.physical_id)

    @staticmethod
    def _configuration(props: dict[str, Any]) -> dict[str, Any]:
        api = {}
        for prop, key in (
            ("LoggingConfiguration", "loggingConfiguration"),
            ("TracingConfiguration", "tracingConfiguration"),
            ("EncryptionConfiguration", "encryptionConfiguration"),
        ):
            if prop in props:
                api[key] = _camel(props[prop])
        return api

    @staticmethod
    def _provisioned(sfn: Any, arn: str) -> Provisioned:
        described = sfn.describe_state_machine(stateMachineArn=arn)
        return Provisioned(
            arn,
            {
                "Arn": arn,
                "Name": described["name"],
                "StateMachineRevisionId": described.get("revisionId") or "INITIAL",
            },
        )


def definition(ctx: Context, props: dict[str, Any]) -> str:
    """The definition text: DefinitionString, Definition or the S3 object, substituted."""
    if "DefinitionString" in props:
        text = props["DefinitionString"]
    elif "Definition" in props:
        text = json.dumps(props["Definition"])
    elif "DefinitionS3Location" in props:
        location = props["DefinitionS3Location"]
        extra = {"VersionId": location["Version"]} if "Version" in location else {}
        text = (
            ctx.client("s3")
            .get_object(Bucket=location["Bucket"], Key=location["Key"], **extra)["Body"]
            .read()
            .decode()
        )
    else:
        raise ResourceError(
            "Properties validation failed for resource: one of DefinitionString, Definition "
            "or DefinitionS3Location is required"
        )
    for key, value in (props.get("DefinitionSubstitutions") or {}).items():
        text = text.replace("${" + key + "}", _text(value) if not isinstance(value, str) else value)
    return text


# ---------------------------------------------------------------- EventBridge


class Rule(Handler):
    resource_type = "AWS::Events::Rule"
    properties = frozenset(
        {
            "Name",
            "Description",
            "EventBusName",
            "EventPattern",
            "ScheduleExpression",
            "State",
            "RoleArn",
            "Targets",
        }
    )
    attributes = frozenset({"Arn"})
    replace_on = ("Name", "EventBusName")
    name_property = "Name"

    def create(self, ctx, props):
        events = ctx.client("events")
        name = props.get("Name") or ctx.name(64)
        bus = props.get("EventBusName", "default")
        try:
            events.describe_rule(Name=name, EventBusName=bus)
        except Exception as exc:
            if not _is(exc, NOT_FOUND_CODES):
                raise
        else:
            raise already_exists(self.resource_type, name)
        made = Provisioned(name if bus == "default" else f"{bus}|{name}")
        result: list[Provisioned] = []
        self.undo_on_error(
            ctx, made, props, lambda: result.append(self._put(events, name, bus, {}, props))
        )
        return result[0]

    def update(self, ctx, current, old, new):
        name = current.physical_id.split("|")[-1]
        return self._put(ctx.client("events"), name, new.get("EventBusName", "default"), old, new)

    def delete(self, ctx, current, props):
        events, name = ctx.client("events"), current.physical_id.split("|")[-1]
        bus = props.get("EventBusName", "default")
        try:
            ids = [
                t["Id"] for t in events.list_targets_by_rule(Rule=name, EventBusName=bus)["Targets"]
            ]
            if ids:
                events.remove_targets(Rule=name, EventBusName=bus, Ids=ids)
            events.delete_rule(Name=name, EventBusName=bus)
        except Exception as exc:
            if not _is(exc, NOT_FOUND_CODES):
                raise

    @staticmethod
    def _put(
        events: Any, name: str, bus: str, old: dict[str, Any], new: dict[str, Any]
    ) -> Provisioned:
        arn = events.put_rule(
            Name=name,
            EventBusName=bus,
            State=new.get("State", "ENABLED"),
            **_pick(
                new,
                {
                    "EventPattern": ("EventPattern", _json),
                    "ScheduleExpression": ("ScheduleExpression", None),
                    "Description": ("Description", None),
                    "RoleArn": ("RoleArn", None),
                },
            ),
        )["RuleArn"]
        new_targets = new.get("Targets") or []
        removed = sorted(
            {t["Id"] for t in old.get("Targets") or []} - {t["Id"] for t in new_targets}
        )
        if removed:
            events.remove_targets(Rule=name, EventBusName=bus, Ids=removed)
        if new_targets and _changed(old, new, ("Targets",)):
            failed = events.put_targets(
                Rule=name, EventBusName=bus, Targets=[_target(t) for t in new_targets]
            )
            if failed.get("FailedEntryCount"):
                entry = failed["FailedEntries"][0]
                raise ResourceError(
                    f"Target {entry.get('TargetId')} of rule {name}: {entry.get('ErrorMessage')}"
                )
        physical = name if bus == "default" else f"{bus}|{name}"
        return Provisioned(physical, {"Arn": arn})


def _target(target: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation target as PutTargets takes it (same names; JSON objects as text)."""
    converted = dict(target)
    if "Input" in converted:
        converted["Input"] = _json(converted["Input"])
    if "RetryPolicy" in converted:
        converted["RetryPolicy"] = {k: int(v) for k, v in converted["RetryPolicy"].items()}
    return converted


# ---------------------------------------------------------------- CloudWatch and Logs


_ALARM_FIELDS = {
    "AlarmDescription": ("AlarmDescription", None),
    "ActionsEnabled": ("ActionsEnabled", _bool),
    "OKActions": ("OKActions", None),
    "AlarmActions": ("AlarmActions", None),
    "InsufficientDataActions": ("InsufficientDataActions", None),
    "MetricName": ("MetricName", None),
    "Namespace": ("Namespace", None),
    "Statistic": ("Statistic", None),
    "ExtendedStatistic": ("ExtendedStatistic", None),
    "Dimensions": ("Dimensions", None),
    "Period": ("Period", int),
    "Unit": ("Unit", None),
    "EvaluationPeriods": ("EvaluationPeriods", int),
    "DatapointsToAlarm": ("DatapointsToAlarm", int),
    "Threshold": ("Threshold", float),
    "ComparisonOperator": ("ComparisonOperator", None),
    "TreatMissingData": ("TreatMissingData", None),
    "EvaluateLowSampleCountPercentile": ("EvaluateLowSampleCountPercentile", None),
    "Metrics": ("Metrics", None),
    "ThresholdMetricId": ("ThresholdMetricId", None),
    "Tags": ("Tags", None),
}


class Alarm(Handler):
    resource_type = "AWS::CloudWatch::Alarm"
    properties = frozenset({"AlarmName", *_ALARM_FIELDS})
    attributes = frozenset({"Arn"})
    replace_on = ("AlarmName",)
    name_property = "AlarmName"

    def create(self, ctx, props):
        cloudwatch = ctx.client("cloudwatch")
        name = props.get("AlarmName") or ctx.name(255)
        if cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]:
            raise already_exists(self.resource_type, name)
        return self._put(cloudwatch, name, props)

    def update(self, ctx, current, old, new):
        return self._put(ctx.client("cloudwatch"), current.physical_id, new)

    def delete(self, ctx, current, props):
        ctx.client("cloudwatch").delete_alarms(AlarmNames=[current.physical_id])

    @staticmethod
    def _put(cloudwatch: Any, name: str, props: dict[str, Any]) -> Provisioned:
        cloudwatch.put_metric_alarm(AlarmName=name, **_pick(props, _ALARM_FIELDS))
        alarm = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
        return Provisioned(name, {"Arn": alarm["AlarmArn"]})


class LogGroup(Handler):
    resource_type = "AWS::Logs::LogGroup"
    properties = frozenset({"LogGroupName", "RetentionInDays", "KmsKeyId", "Tags"})
    attributes = frozenset({"Arn"})
    replace_on = ("LogGroupName",)
    name_property = "LogGroupName"

    def create(self, ctx, props):
        logs = ctx.client("logs")
        name = props.get("LogGroupName") or ctx.name(512)
        logs.create_log_group(
            logGroupName=name,
            **_pick(props, {"KmsKeyId": ("kmsKeyId", None), "Tags": ("tags", _tag_map)}),
        )
        if "RetentionInDays" in props:
            logs.put_retention_policy(
                logGroupName=name, retentionInDays=int(props["RetentionInDays"])
            )
        return self._provisioned(ctx, name)

    def update(self, ctx, current, old, new):
        logs, name = ctx.client("logs"), current.physical_id
        if _changed(old, new, ("RetentionInDays",)):
            if "RetentionInDays" in new:
                logs.put_retention_policy(
                    logGroupName=name, retentionInDays=int(new["RetentionInDays"])
                )
            else:
                logs.delete_retention_policy(logGroupName=name)
        return self._provisioned(ctx, name)

    def delete(self, ctx, current, props):
        try:
            ctx.client("logs").delete_log_group(logGroupName=current.physical_id)
        except Exception as exc:
            if not _is(exc, NOT_FOUND_CODES):
                raise

    @staticmethod
    def _provisioned(ctx: Context, name: str) -> Provisioned:
        return Provisioned(
            name,
            {"Arn": f"arn:{ctx.partition}:logs:{ctx.region}:{ctx.account_id}:log-group:{name}:*"},
        )


# ---------------------------------------------------------------- moto's own models


class MotoModel(Handler):
    """A type this module has no handler for: moto's CloudFormationModel class provisions it."""

    attributes = None  # whatever the moto model answers

    def __init__(self, model: Any, resource_type: str):
        self.model = model
        self.resource_type = resource_type  # type: ignore[misc]

    def check(self, props: dict[str, Any]) -> None:
        pass

    def create(self, ctx, props):
        from moto.cloudformation.parsing import (
            generate_resource_name,
            resource_name_property_from_type,
        )

        name_property = resource_name_property_from_type(self.resource_type)
        name = (name_property and props.get(name_property)) or generate_resource_name(
            self.resource_type, ctx.stack_name, ctx.logical_id
        )
        native = self.model.create_from_cloudformation_json(
            name,
            {"Type": self.resource_type, "Properties": props},
            ctx.account_id,
            ctx.region,
            LogicalId=ctx.logical_id,
            StackId=ctx.stack_id,
            ResourceType=self.resource_type,
        )
        return Provisioned(str(getattr(native, "physical_resource_id", name)), native=native)

    def update(self, ctx, current, old, new):
        from moto.cloudformation.parsing import resource_name_property_from_type

        name_property = resource_name_property_from_type(self.resource_type)
        native = self.model.update_from_cloudformation_json(
            original_resource=current.native,
            new_resource_name=(name_property and new.get(name_property)) or current.physical_id,
            cloudformation_json={"Type": self.resource_type, "Properties": new},
            account_id=ctx.account_id,
            region_name=ctx.region,
        )
        return Provisioned(
            str(getattr(native, "physical_resource_id", current.physical_id)), native=native
        )

    def delete(self, ctx, current, props):
        try:
            current.native.delete(ctx.account_id, ctx.region)
        except (AttributeError, TypeError, NotImplementedError):
            self.model.delete_from_cloudformation_json(
                current.physical_id,
                {"Type": self.resource_type, "Properties": props},
                ctx.account_id,
                ctx.region,
            )

    def getatt(self, current: Provisioned, attribute: str) -> Any:
        return current.native.get_cfn_attribute(attribute)


HANDLERS: dict[str, Handler] = {
    handler.resource_type: handler
    for handler in (
        Bucket(),
        BucketPolicy(),
        Role(),
        OIDCProvider(),
        Table(),
        Topic(),
        Subscription(),
        Function(),
        GlueJob(),
        StateMachine(),
        Rule(),
        Alarm(),
        LogGroup(),
    )
}


def handler_for(resource_type: str) -> Handler | None:
    """This module's handler, else moto's model for the type, else None (unsupported)."""
    if resource_type in HANDLERS:
        return HANDLERS[resource_type]
    from moto.cloudformation.parsing import get_model_map

    model = get_model_map().get(resource_type)
    return MotoModel(model, resource_type) if model is not None else None


def replace_on(resource_type: str) -> tuple[str, ...]:
    """The properties whose change replaces a resource of the type (for moto's models: the
    name property, since a renamed resource is a new one)."""
    handler = HANDLERS.get(resource_type)
    if handler is not None:
        return handler.replace_on
    from moto.cloudformation.parsing import resource_name_property_from_type

    name = resource_name_property_from_type(resource_type)
    return (name,) if name else ()
