"""Who gets a warning or a notice: contacts by duty, found up the organisation tree.

Enterprise duties (safety department, headquarters) belong to the enterprise or gas station
itself; district duties (industry regulator, emergency bureau, industry department) to the
nearest county above it (a city when there is no county); the city-level monitoring system
to the nearest city.  The escalation table (spec/sensors.md §4) names duties; this module
turns them into people and addresses.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Organisation, OrgKind
from storage.sensor_models import Duty, OrgContact

ENTERPRISE_DUTIES = frozenset({Duty.safety_dept, Duty.hq})
DISTRICT_DUTIES = frozenset({Duty.industry_regulator, Duty.emergency_bureau, Duty.industry_dept})
CITY_DUTIES = frozenset({Duty.monitoring_center})
SITE_KINDS = frozenset({OrgKind.enterprise, OrgKind.gas_station})


@dataclass(frozen=True)
class Recipient:
    """One contact of one organisation, with the addresses it can be reached at."""

    org_id: int
    org_path: str
    duty: str
    name: str
    email: str = ""
    phone: str = ""
    webhook_url: str = ""
    contact_id: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "org_id": self.org_id,
            "duty": self.duty,
            "name": self.name,
            "contact_id": self.contact_id,
        }


def ancestors(session: Session, org_id: int) -> list[Organisation]:
    """The organisation and its parents, nearest first."""
    chain: list[Organisation] = []
    org = session.get(Organisation, org_id)
    while org is not None and len(chain) < 16:
        chain.append(org)
        org = session.get(Organisation, org.parent_id) if org.parent_id else None
    return chain


def org_for_duty(chain: list[Organisation], duty: Duty) -> Organisation | None:
    """Which organisation of the chain holds ``duty``."""
    if duty in ENTERPRISE_DUTIES:
        return next((o for o in chain if o.kind in SITE_KINDS), chain[0] if chain else None)
    if duty in DISTRICT_DUTIES:
        return next((o for o in chain if o.kind == OrgKind.county), None) or next(
            (o for o in chain if o.kind == OrgKind.city), None
        )
    return next((o for o in chain if o.kind == OrgKind.city), None)


def resolve(
    session: Session, org_id: int, duties: list[Duty] | tuple[Duty, ...]
) -> list[Recipient]:
    """Every enabled contact for each duty; a duty nobody holds yields an organisation-only
    recipient (no address), so the UI of that organisation still sees the push."""
    chain = ancestors(session, org_id)
    out: list[Recipient] = []
    for duty in duties:
        org = org_for_duty(chain, Duty(duty))
        if org is None:
            continue
        contacts = session.scalars(
            select(OrgContact)
            .where(OrgContact.org_id == org.id, OrgContact.duty == duty)
            .where(OrgContact.enabled.is_(True))
            .order_by(OrgContact.id)
        ).all()
        if not contacts:
            out.append(Recipient(org.id, org.path, duty.value, org.name))
        for c in contacts:
            out.append(
                Recipient(
                    org.id,
                    org.path,
                    duty.value,
                    c.name or org.name,
                    c.email,
                    c.phone,
                    c.webhook_url,
                    c.id,
                )
            )
    return out
