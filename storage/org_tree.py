"""Organisation tree helpers shared by routers, the CLI and the demo seeder."""

from __future__ import annotations

from sqlalchemy.orm import Session

from storage.models import Organisation, OrgKind

# Which kinds may sit under which: province → city → county → park/enterprise/gas station.
ALLOWED_PARENTS: dict[OrgKind, set[OrgKind | None]] = {
    OrgKind.province: {None},
    OrgKind.city: {OrgKind.province, None},
    OrgKind.county: {OrgKind.city, None},
    OrgKind.park: {OrgKind.county, OrgKind.city},
    OrgKind.enterprise: {OrgKind.county, OrgKind.park, OrgKind.city},
    OrgKind.gas_station: {OrgKind.county, OrgKind.city},
}


class OrgTreeError(ValueError):
    pass


def create_org(
    session: Session, name: str, kind: OrgKind, parent: Organisation | None, code: str = ""
) -> Organisation:
    parent_kind = parent.kind if parent is not None else None
    if parent_kind not in ALLOWED_PARENTS[kind]:
        where = parent_kind.value if parent_kind else "the top level"
        raise OrgTreeError(f"a {kind.value} cannot be placed under {where}")
    org = Organisation(name=name, kind=kind, parent_id=parent.id if parent else None, code=code)
    session.add(org)
    session.flush()  # assigns the id the path needs
    org.path = f"{parent.path if parent else '/'}{org.id}/"
    return org
