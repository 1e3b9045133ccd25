"""After a passing verification: what is inside the image, read from the first verified instance.

One shell script over the verification's own SSH seam (`Launcher.run`) prints the kernel, /etc/os-release, the
installed packages (dpkg-query, else rpm), the first lines of every changelog.Debian.gz and the apt sources;
this module writes `build/<image>/packages.json`, its copy `build/<image>/inventory/<build_id>.json` that
`stamp notes` reads, and the CycloneDX 1.6 SBOM `build/<image>/sbom.cdx.json` (docs/inventory.md).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from cyclonedx.model import Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from stamp import __version__, clock, output
from stamp.catalog import inventory as inv
from stamp.catalog.results import read_result
from stamp.errors import CatalogError, ProcessError, VerifyError
from stamp.hosts.base import Host, Launcher

MARK = "@@stamp "
# Every line is printed as ASCII (`tr`): a changelog's Latin-1 name must not break the reading of the rest.
SCRIPT = rf"""{{
m() {{ printf '{MARK}%s\n' "$*"; }}
m kernel; uname -r
m os-release; cat /etc/os-release
if command -v dpkg-query >/dev/null 2>&1; then
  m dpkg; dpkg-query -W -f='{inv.DPKG_FORMAT}'
  for f in /usr/share/doc/*/changelog.Debian.gz; do
    [ -r "$f" ] || continue
    m changelog "$f"; zcat -- "$f" | head -n {inv.CHANGELOG_LINES}
  done
elif command -v rpm >/dev/null 2>&1; then
  m rpm; rpm -qa --queryformat '{inv.RPM_FORMAT}'
fi
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  m apt-source "$f"; cat -- "$f"; echo
done
m end
}} 2>/dev/null | tr -cd '\11\12\40-\176'"""


def sections(text: str) -> list[tuple[str, str, str]]:
    """(kind, argument, body) of each section the script printed; a cut-off output (no `end`) is refused."""
    found: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith(MARK):
            kind, _, argument = line.removeprefix(MARK).partition(" ")
            found.append((kind, argument, []))
        elif found:
            found[-1][2].append(line)
    if not found or found[-1][0] != "end":
        raise VerifyError("the package inventory's output stopped before its end")
    return [(kind, argument, "\n".join(body) + "\n") for kind, argument, body in found[:-1]]


def parse_inventory(text: str, *, image: str, build_id: str, ami_id: str) -> inv.Inventory:
    """The inventory from what SCRIPT printed on the instance."""
    parts = sections(text)
    bodies = {kind: body for kind, _arg, body in parts}
    packager: inv.Packager = "dpkg" if "dpkg" in bodies else "rpm" if "rpm" in bodies else "none"
    sources: list[inv.AptSource] = []
    for kind, file, body in parts:
        if kind == "apt-source":
            parse = inv.parse_deb822_sources if file.endswith(".sources") else inv.parse_sources_list
            sources += parse(body, file)
    packages = inv.parse_dpkg(bodies["dpkg"]) if packager == "dpkg" else inv.parse_rpm(bodies.get("rpm", ""))
    return inv.Inventory(
        image=image,
        build_id=build_id,
        ami=ami_id,
        collected_at=clock.iso(clock.utc_now()),
        packager=packager,
        os=inv.parse_os_release(bodies.get("os-release", "")),
        kernel=bodies.get("kernel", "").strip(),
        sources=inv.unique_sources(sources),
        packages=packages,
        changelogs=inv.parse_changelogs(body for kind, _f, body in parts if kind == "changelog"),
    )


def purl(inventory: inv.Inventory, package: inv.Package) -> PackageURL:
    """`pkg:deb/debian/openssl@3.0.15-1~deb12u1?arch=amd64`, `pkg:rpm/fedora/bash@5.2.26-3.fc40?arch=x86_64`."""
    if inventory.packager == "rpm":
        epoch, sep, version = package.version.partition(":")
        qualifiers = {"arch": package.arch} | ({"epoch": epoch} if sep else {})
        return PackageURL(
            type="rpm",
            namespace=inventory.os.id or "redhat",
            name=package.name,
            version=version if sep else package.version,
            qualifiers=qualifiers,
        )
    return PackageURL(
        type="deb",
        namespace=inventory.os.id or "debian",
        name=package.name,
        version=package.version,
        qualifiers={"arch": package.arch},
    )


def sbom_json(inventory: inv.Inventory, amis: Mapping[str, str]) -> str:
    """The CycloneDX 1.6 SBOM of one build: the image as the metadata's component, one component per package;
    the image, build ID, kernel and AMI IDs (per region) as metadata properties."""
    bom = Bom()
    bom.metadata.timestamp = datetime.fromisoformat(inventory.collected_at.replace("Z", "+00:00"))
    bom.metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name="stamp", version=__version__))
    root = Component(
        type=ComponentType.OPERATING_SYSTEM,
        name=inventory.image,
        version=inventory.build_id,
        bom_ref=f"stamp-image:{inventory.image}@{inventory.build_id}",
        description=inventory.os.pretty_name or None,
    )
    bom.metadata.component = root
    properties = {
        "stamp:image": inventory.image,
        "stamp:build-id": inventory.build_id,
        "stamp:verified-ami": inventory.ami,
        "stamp:kernel": inventory.kernel,
        "stamp:packager": inventory.packager,
    } | {f"stamp:ami:{region}": ami_id for region, ami_id in sorted(amis.items())}
    for name, value in properties.items():
        if value:
            bom.metadata.properties.add(Property(name=name, value=value))
    components = []
    seen: set[str] = set()
    for package in inventory.packages:
        url = purl(inventory, package)
        ref = url.to_string()
        if ref in seen:
            continue
        seen.add(ref)
        component = Component(
            type=ComponentType.LIBRARY,
            name=package.name,
            version=package.version,
            purl=url,
            bom_ref=ref,
            properties=[
                Property(name="stamp:source-package", value=package.source),
                Property(name="stamp:source-version", value=package.source_version),
            ],
        )
        bom.components.add(component)
        components.append(component)
    bom.register_dependency(root, components)
    return JsonV1Dot6(bom).output_as_string(indent=2) + "\n"


def read(launcher: Launcher, host: Host, *, image: str) -> str:
    """The inventory script's output from `host`; a failure fails the verification (an image whose contents are
    unknown is not released)."""
    try:
        return launcher.run(host, SCRIPT)
    except ProcessError as exc:
        raise VerifyError(
            f"image '{image}': could not take the package inventory of {host.instance_id}: {exc}"
        ) from exc


def take(text: str, *, image: str, instance: str, ami_id: str, build_id: str, out: Path) -> inv.Inventory:
    """Write the three files under `out` (build/<image>) from `text`, what `read` got from `instance` (an instance of
    `ami_id`, verified)."""
    with output.step(image, f"package inventory and SBOM of {instance}"):
        started = time.monotonic()
        inventory = parse_inventory(text, image=image, build_id=build_id, ami_id=ami_id)
        document = inventory.model_dump_json(indent=2) + "\n"
        inv.write_json(out / inv.PACKAGES_FILE, document)
        inv.write_json(out / inv.HISTORY_DIR / f"{build_id}.json", document)
        inv.write_json(out / inv.SBOM_FILE, sbom_json(inventory, _amis(out, image, build_id, ami_id)))
        output.detail(
            f"[{image}] inventory: {len(inventory.packages)} packages, {len(inventory.changelogs)} changelogs;"
            f" written in {time.monotonic() - started:.2f} s"
        )
    return inventory


def _amis(out: Path, image: str, build_id: str, ami_id: str) -> dict[str, str]:
    """Every region's AMI of the build, from its result.json; only the verified one when that is not at hand."""
    try:
        result = read_result(out.parent, image)
    except CatalogError:
        return {}
    return dict(result.amis) if result.build_id == build_id and ami_id in result.amis.values() else {}
