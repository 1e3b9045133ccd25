"""S3: the artifacts stored beside the catalog (create the bucket, put, head and get an object)."""

from __future__ import annotations

import base64
import hashlib

from stamp.cloud.aws_base import AwsBase
from stamp.cloud.aws_convert import sha256_hex
from stamp.cloud.protocol import StoredObject
from stamp.errors import CloudError, MissingResource


class AwsObjects(AwsBase):
    def create_bucket(self, region: str, bucket: str) -> bool:
        # us-east-1 is S3's default location and refuses to be named as a LocationConstraint.
        where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        try:
            with self._errors("CreateBucket", region, f"s3://{bucket}"):
                self.s3(region).create_bucket(Bucket=bucket, **where)
        except CloudError as exc:
            if ": BucketAlreadyOwnedByYou" in exc.message:
                return False
            raise
        return True

    def put_object(self, region: str, bucket: str, key: str, body: bytes, *, content_type: str) -> str:
        digest = hashlib.sha256(body).digest()
        with self._errors("PutObject", region, f"s3://{bucket}/{key}"):
            self.s3(region).put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                ChecksumSHA256=base64.b64encode(digest).decode("ascii"),
            )
        return digest.hex()

    def head_object(self, region: str, bucket: str, key: str) -> StoredObject | None:
        try:
            with self._errors("HeadObject", region, f"s3://{bucket}/{key}"):
                answer = self.s3(region).head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        except MissingResource:
            return None
        return StoredObject(bucket, key, int(answer.get("ContentLength", 0)), sha256_hex(answer.get("ChecksumSHA256")))

    def get_object(self, region: str, bucket: str, key: str) -> bytes:
        with self._errors("GetObject", region, f"s3://{bucket}/{key}"):
            answer = self.s3(region).get_object(Bucket=bucket, Key=key)
            body: bytes = answer["Body"].read()
        return body
