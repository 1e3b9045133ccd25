"""EC2 instances and what they start with: key pairs and security groups (verification, `stamp launch`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from stamp.cloud.aws_base import AwsBase
from stamp.cloud.aws_convert import instance_of, some_ids, tag_list
from stamp.cloud.protocol import Instance, KeyPair

if TYPE_CHECKING:
    from mypy_boto3_ec2.literals import InstanceTypeType
    from mypy_boto3_ec2.type_defs import TagSpecificationTypeDef


class AwsInstances(AwsBase):
    def import_key_pair(
        self, region: str, name: str, public_key: str, *, tags: Mapping[str, str] | None = None
    ) -> KeyPair:
        specs: list[TagSpecificationTypeDef] = [{"ResourceType": "key-pair", "Tags": tag_list(tags)}] if tags else []
        with self._errors("ImportKeyPair", region, f"key pair '{name}'"):
            answer = self.ec2(region).import_key_pair(
                KeyName=name, PublicKeyMaterial=public_key.encode("utf-8"), TagSpecifications=specs
            )
        return KeyPair(key_pair_id=answer.get("KeyPairId", ""), name=answer.get("KeyName", name))

    def run_instances(
        self,
        region: str,
        ami_id: str,
        *,
        count: int,
        instance_type: str,
        key_name: str | None = None,
        security_group_ids: Sequence[str] = (),
        user_data: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> list[Instance]:
        if count < 1:
            raise ValueError("count must be at least 1")
        params: dict[str, Any] = {}
        if key_name:
            params["KeyName"] = key_name
        if security_group_ids:
            params["SecurityGroupIds"] = list(security_group_ids)
        if user_data is not None:
            params["UserData"] = user_data  # boto3 base64-encodes it
        if tags:
            specs: list[TagSpecificationTypeDef] = [
                {"ResourceType": "instance", "Tags": tag_list(tags)},
                {"ResourceType": "volume", "Tags": tag_list(tags)},
            ]
            params["TagSpecifications"] = specs
        itype: InstanceTypeType = instance_type  # type: ignore[assignment]
        with self._errors("RunInstances", region, f"{count} instance(s) of {ami_id}"):
            answer = self.ec2(region).run_instances(
                ImageId=ami_id, InstanceType=itype, MinCount=count, MaxCount=count, **params
            )
        return [instance_of(i) for i in answer.get("Instances", [])]

    def describe_instances(self, region: str, instance_ids: Sequence[str]) -> list[Instance]:
        if not instance_ids:
            return []
        found: list[Instance] = []
        with self._errors("DescribeInstances", region, some_ids(instance_ids)):
            for page in self.ec2(region).get_paginator("describe_instances").paginate(InstanceIds=list(instance_ids)):
                found.extend(instance_of(i) for r in page.get("Reservations", []) for i in r.get("Instances", []))
        return found

    def terminate_instances(self, region: str, instance_ids: Sequence[str]) -> None:
        if not instance_ids:
            return
        with self._errors("TerminateInstances", region, some_ids(instance_ids)):
            self.ec2(region).terminate_instances(InstanceIds=list(instance_ids))

    def delete_key_pair(self, region: str, key_name: str) -> None:
        with self._errors("DeleteKeyPair", region, f"key pair '{key_name}'"):
            self.ec2(region).delete_key_pair(KeyName=key_name)

    def create_security_group(
        self, region: str, name: str, *, description: str, ssh_cidrs: Sequence[str], tags: Mapping[str, str]
    ) -> str:
        ec2 = self.ec2(region)
        specs: list[TagSpecificationTypeDef] = [{"ResourceType": "security-group", "Tags": tag_list(tags)}]
        with self._errors("CreateSecurityGroup", region, f"security group '{name}'"):
            group_id = ec2.create_security_group(GroupName=name, Description=description, TagSpecifications=specs)[
                "GroupId"
            ]
        with self._errors("AuthorizeSecurityGroupIngress", region, group_id):
            ec2.authorize_security_group_ingress(
                GroupId=group_id,
                IpPermissions=[
                    {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": c} for c in ssh_cidrs]}
                ],
            )
        return group_id

    def delete_security_group(self, region: str, group_id: str) -> None:
        with self._errors("DeleteSecurityGroup", region, group_id):
            self.ec2(region).delete_security_group(GroupId=group_id)
