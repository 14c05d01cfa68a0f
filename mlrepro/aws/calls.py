"""A log of the AWS calls a boto3 session makes, and a dry-run mode that answers them offline.

`mlrepro launch` hands the SageMaker SDK a boto3 session with this log attached, so
the CreateTrainingJob request it reports is the one the SDK really built, byte for
byte. With `offline=True` (`--dry-run`) every call is answered here, before it is
signed or sent: nothing reaches AWS and no credentials are needed.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from typing import Any

DRY_RUN_ACCOUNT = "000000000000"
_NOW = _dt.datetime.now(_dt.timezone.utc)


@dataclass
class AwsCall:
    """One API call: service, operation, and the bucket/key for S3 calls."""

    service: str
    operation: str
    bucket: str | None = None
    key: str | None = None


@dataclass
class AwsCallLog:
    """Attach to a boto3 session *before* any client is made from it.

    Args:
        session: the boto3 session the SDK will use.
        offline: answer every call locally (a dry run) instead of sending it.
        bucket: the bucket a dry run pretends exists.

    Example:
        >>> import boto3
        >>> log = AwsCallLog(boto3.session.Session(region_name="us-east-1"), offline=True)
        >>> log.attach().session.client("s3").put_object(Bucket="b", Key="k", Body=b"")["ETag"]
        '"dry-run"'
    """

    session: Any
    offline: bool = False
    bucket: str | None = None
    calls: list[AwsCall] = field(default_factory=list)
    requests: dict[str, list[dict]] = field(default_factory=dict)

    def attach(self) -> "AwsCallLog":
        events = self.session.events
        events.register("before-parameter-build.*.*", self._before_parameters)
        events.register("before-call.*.*", self._before_call)
        return self

    def _before_parameters(self, params, model, **_kwargs) -> None:
        service = model.service_model.service_name
        self.calls.append(AwsCall(service, model.name, params.get("Bucket"), params.get("Key")))

    def _before_call(self, params, model, **_kwargs):
        body = params.get("body")
        protocol = model.service_model.protocol
        if protocol.startswith("json") and body:
            try:
                decoded = json.loads(body if isinstance(body, str) else body.decode("utf-8"))
                self.requests.setdefault(model.name, []).append(decoded)
            except (ValueError, UnicodeDecodeError, AttributeError):
                pass
        if not self.offline:
            return None
        from botocore.awsrequest import AWSResponse

        parsed = self._answer(model.name)
        parsed.setdefault("ResponseMetadata", {"HTTPStatusCode": 200, "RequestId": "dry-run"})
        return AWSResponse("https://dry-run.invalid", 200, {}, None), parsed

    def _answer(self, operation: str) -> dict:
        """A minimal, well-formed response to each call the SDK makes while creating a job."""
        created = self.requests.get("CreateTrainingJob", [{}])[-1]
        name = created.get("TrainingJobName", "dry-run")
        arn = f"arn:aws:sagemaker:dry-run:{DRY_RUN_ACCOUNT}:training-job/{name}"
        if operation == "CreateTrainingJob":
            return {"TrainingJobArn": arn}
        if operation == "DescribeTrainingJob":
            return {**created, "TrainingJobArn": arn, "TrainingJobStatus": "InProgress",
                    "SecondaryStatus": "Starting", "CreationTime": _NOW}
        if operation == "ListBuckets":
            return {"Buckets": [{"Name": self.bucket, "CreationDate": _NOW}]
                    if self.bucket else []}
        if operation == "GetCallerIdentity":
            return {"Account": DRY_RUN_ACCOUNT, "Arn": f"arn:aws:iam::{DRY_RUN_ACCOUNT}:root",
                    "UserId": "dry-run"}
        if operation == "CreateMultipartUpload":
            return {"UploadId": "dry-run"}
        if operation in ("PutObject", "UploadPart", "CompleteMultipartUpload"):
            return {"ETag": '"dry-run"'}
        return {}

    def request(self, operation: str) -> dict | None:
        """The last request body sent (or, offline, that would have been sent) for `operation`."""
        sent = self.requests.get(operation)
        return sent[-1] if sent else None

    def uploads(self) -> list[str]:
        """S3 URIs of every object written (or, offline, that would have been)."""
        return [f"s3://{c.bucket}/{c.key}" for c in self.calls
                if c.service == "s3" and c.operation in ("PutObject", "CreateMultipartUpload")]
