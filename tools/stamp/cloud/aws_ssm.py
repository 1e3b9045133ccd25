"""SSM parameters: the image parameters consumers follow, and the text parameter of undelivered events."""

from __future__ import annotations

from collections.abc import Collection

from stamp.cloud.aws_base import AwsBase
from stamp.cloud.aws_convert import some_ids
from stamp.cloud.protocol import Parameter, ParameterUpdate
from stamp.errors import CloudError, MissingResource

# GetParameters accepts at most 10 names.
_PARAMETERS_PER_CALL = 10


class AwsParameters(AwsBase):
    def get_parameters(self, region: str, names: Collection[str]) -> dict[str, Parameter]:
        wanted = sorted(set(names))
        found: dict[str, Parameter] = {}
        for start in range(0, len(wanted), _PARAMETERS_PER_CALL):
            chunk = wanted[start : start + _PARAMETERS_PER_CALL]
            with self._errors("GetParameters", region, some_ids(chunk)):
                answer = self.ssm(region).get_parameters(Names=chunk)
            for item in answer.get("Parameters", []):
                found[item["Name"]] = Parameter(name=item["Name"], value=item["Value"], version=item["Version"])
        return found

    def put_image_parameter(self, region: str, name: str, ami_id: str) -> ParameterUpdate:
        # PutParameter with an unchanged value still bumps the version (docs/facts.md, moto gaps), and consumers
        # watch the version, so read and compare first.
        existing = self.get_parameters(region, [name]).get(name)
        if existing is not None and existing.value == ami_id:
            return ParameterUpdate(name=name, previous=existing.value, value=ami_id, version=existing.version)
        version = self.write_image_parameter(region, name, ami_id, overwrite=existing is not None)
        return ParameterUpdate(name=name, previous=existing.value if existing else None, value=ami_id, version=version)

    def write_image_parameter(self, region: str, name: str, ami_id: str, *, overwrite: bool) -> int:
        # Tags together with Overwrite is a ValidationException, so the parameter carries no tags:
        # https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html
        with self._errors("PutParameter", region, name):
            answer = self.ssm(region).put_parameter(
                Name=name,
                Value=ami_id,
                Type="String",
                DataType="aws:ec2:image",
                Description="Current AMI of this stamp image; written by stamp publish",
                Overwrite=overwrite,
            )
        return answer["Version"]

    def delete_parameter(self, region: str, name: str) -> bool:
        try:
            with self._errors("DeleteParameter", region, name):
                self.ssm(region).delete_parameter(Name=name)
        except MissingResource:
            return False
        except CloudError as exc:
            # The shared error mapper names EC2 for every call it does not list as SSM.
            exc.hint = exc.hint.replace("ec2:DeleteParameter", "ssm:DeleteParameter")
            raise
        return True

    def put_text_parameter(self, region: str, name: str, value: str) -> None:
        with self._errors("PutParameter", region, name):
            self.ssm(region).put_parameter(
                Name=name,
                Value=value,
                Type="String",
                Description="Release events stamp could not deliver yet; written by stamp",
                Overwrite=True,
            )
