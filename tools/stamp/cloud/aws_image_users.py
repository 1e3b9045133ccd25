"""What still uses an AMI: launch template versions, live instances and Auto Scaling groups (docs/lifecycle.md)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from stamp.cloud.aws_base import IMAGE_IDS_PER_CALL, AwsBase
from stamp.cloud.aws_convert import instance_of, some_ids
from stamp.cloud.protocol import ImageUser

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import FilterTypeDef

# DescribeLaunchConfigurations takes at most 50 names.
_LAUNCH_CONFIGURATIONS_PER_CALL = 50


class AwsImageUsers(AwsBase):
    def image_users(self, region: str, ami_ids: Collection[str]) -> list[ImageUser]:
        wanted = sorted(set(ami_ids))
        if not wanted:
            return []
        ec2 = self.ec2(region)
        users: dict[tuple[str, str], ImageUser] = {}
        # Template ID -> version ("$Latest", "$Default" or its number) -> its AMI, for the Auto Scaling groups too.
        templates: dict[str, dict[str, str]] = {}
        # Without a template ID, the versions $Latest and $Default describe every launch template in the region:
        # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeLaunchTemplateVersions.html
        with self._errors("DescribeLaunchTemplateVersions", region, "every launch template"):
            pages = ec2.get_paginator("describe_launch_template_versions")
            for page in pages.paginate(Versions=["$Latest", "$Default"]):
                for version in page.get("LaunchTemplateVersions", []):
                    ami_id = version.get("LaunchTemplateData", {}).get("ImageId", "")
                    template_id = version.get("LaunchTemplateId", "")
                    number = version.get("VersionNumber", 0)
                    which = "$Default" if version.get("DefaultVersion") else "$Latest"
                    known = templates.setdefault(template_id, {})
                    known[str(number)] = known[which] = ami_id
                    if ami_id not in wanted:
                        continue
                    detail = f"{version.get('LaunchTemplateName', '')} version {number}, {which}"
                    # A template whose $Latest is its $Default comes back twice.
                    key = (template_id, str(number))
                    users[key] = ImageUser(region, "launch-template", template_id, ami_id, detail)
        # Stopped instances count too: whoever stopped one may replace it from the same image when they come back.
        live = ["pending", "running", "stopping", "stopped"]
        for start in range(0, len(wanted), IMAGE_IDS_PER_CALL):
            chunk = wanted[start : start + IMAGE_IDS_PER_CALL]
            filters: list[FilterTypeDef] = [
                {"Name": "image-id", "Values": chunk},
                {"Name": "instance-state-name", "Values": live},
            ]
            with self._errors("DescribeInstances", region, f"instances of {some_ids(chunk)}"):
                for answer in ec2.get_paginator("describe_instances").paginate(Filters=filters):
                    for reservation in answer.get("Reservations", []):
                        for item in reservation.get("Instances", []):
                            instance = instance_of(item)
                            users[("instance", instance.instance_id)] = ImageUser(
                                region, "instance", instance.instance_id, instance.ami_id, instance.state
                            )
        for group in self._auto_scaling_groups(region, templates):
            if group.ami_id in wanted:
                users[("auto-scaling-group", group.resource_id)] = group
        return sorted(users.values(), key=lambda u: (u.ami_id, u.kind, u.resource_id))

    def _auto_scaling_groups(self, region: str, templates: dict[str, dict[str, str]]) -> list[ImageUser]:
        """Every Auto Scaling group with the AMI it launches: from its launch template's version (the versions
        already read, else one DescribeLaunchTemplateVersions per template) or its launch configuration."""
        autoscaling = self._client("autoscaling", region)
        with self._errors("DescribeAutoScalingGroups", region, "every Auto Scaling group"):
            pages = autoscaling.get_paginator("describe_auto_scaling_groups").paginate()
            groups = [group for page in pages for group in page.get("AutoScalingGroups", [])]
        by_config = sorted({g["LaunchConfigurationName"] for g in groups if g.get("LaunchConfigurationName")})
        configs: dict[str, str] = {}
        for start in range(0, len(by_config), _LAUNCH_CONFIGURATIONS_PER_CALL):
            names = by_config[start : start + _LAUNCH_CONFIGURATIONS_PER_CALL]
            with self._errors("DescribeLaunchConfigurations", region, f"launch configurations {some_ids(names)}"):
                for page in autoscaling.get_paginator("describe_launch_configurations").paginate(
                    LaunchConfigurationNames=names
                ):
                    for config in page.get("LaunchConfigurations", []):
                        configs[config["LaunchConfigurationName"]] = config.get("ImageId", "")
        found = []
        for group in groups:
            name = group["AutoScalingGroupName"]
            spec = group.get("LaunchTemplate") or group.get("MixedInstancesPolicy", {}).get("LaunchTemplate", {}).get(
                "LaunchTemplateSpecification"
            )
            if spec:
                template_id, version = self._template_id(region, spec), str(spec.get("Version") or "$Default")
                ami_id = templates.get(template_id, {}).get(version) or self._template_version_ami(
                    region, template_id, version, templates
                )
                found.append(
                    ImageUser(region, "auto-scaling-group", name, ami_id, f"launch template version {version}")
                )
            elif group.get("LaunchConfigurationName"):
                config = group["LaunchConfigurationName"]
                found.append(
                    ImageUser(
                        region, "auto-scaling-group", name, configs.get(config, ""), f"launch configuration {config}"
                    )
                )
        return found

    def _template_id(self, region: str, spec: Mapping[str, Any]) -> str:
        if spec.get("LaunchTemplateId"):
            return str(spec["LaunchTemplateId"])
        with self._errors("DescribeLaunchTemplates", region, f"launch template {spec.get('LaunchTemplateName')}"):
            answer = self.ec2(region).describe_launch_templates(LaunchTemplateNames=[spec["LaunchTemplateName"]])
        return str(answer["LaunchTemplates"][0]["LaunchTemplateId"])

    def _template_version_ami(
        self, region: str, template_id: str, version: str, templates: dict[str, dict[str, str]]
    ) -> str:
        with self._errors("DescribeLaunchTemplateVersions", region, f"launch template {template_id} version {version}"):
            answer = self.ec2(region).describe_launch_template_versions(
                LaunchTemplateId=template_id, Versions=[version]
            )
        versions = answer.get("LaunchTemplateVersions", [])
        ami_id = versions[0].get("LaunchTemplateData", {}).get("ImageId", "") if versions else ""
        templates.setdefault(template_id, {})[version] = ami_id
        return ami_id
