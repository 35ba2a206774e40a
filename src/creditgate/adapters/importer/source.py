"""Reads an OpenMeter v1 server (OpenMeter itself, or another creditgate) through the `openmeter` SDK and
translates what it answers into creditgate's records (docs/import.md)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from creditgate.records import Entitlement, Feature, Grant, Meter, Subject, new_id
from creditgate.services.imports import UsageMinute
from creditgate.timefmt import parse_rfc3339

PAGE = 1000


Api = Any  # an `openmeter.Client` (or anything with its methods: list_meters, list_features, list_subjects,
# list_entitlements, list_grants, list_meter_subjects, query_meter, get_entitlement_history)


def _time(value: Any) -> datetime:
    return parse_rfc3339(value)


def _opt_time(value: Any) -> datetime | None:
    return None if value is None else parse_rfc3339(value)


def amount(value: Any) -> Decimal:
    """A JSON number as the decimal it prints as (the API's floats: docs/semantics.md §0.3)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"not a number: {value!r}")
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))


def _opt_amount(value: Any) -> Decimal | None:
    return None if value is None else amount(value)


class Source:
    """One OpenMeter v1 server. `now` stands in for creation times the API does not give (meters)."""

    def __init__(self, api: Api, now: datetime | None = None) -> None:
        self.api = api
        self.now = now or datetime.now(UTC)

    def _pages(self, method: Any, **kwargs: Any) -> Iterator[Any]:
        offset = 0
        while True:
            page = method(limit=PAGE, offset=offset, **kwargs)
            yield from page
            if len(page) < PAGE:
                return
            offset += len(page)

    def meters(self) -> list[Meter]:
        return [meter_of(m, self.now) for m in self.api.list_meters()]

    def features(self) -> list[Feature]:
        return [feature_of(f) for f in self._pages(self.api.list_features, include_archived=True)]

    def subjects(self) -> list[Subject]:
        return [subject_of(s, self.now) for s in self.api.list_subjects()]

    def entitlements(self) -> list[tuple[Entitlement, datetime | None]]:
        """Every entitlement, deleted ones too, with its `lastReset` (METERED)."""
        pages = self._pages(self.api.list_entitlements, order_by="createdAt", params={"includeDeleted": "true"})
        return [(entitlement_of(e), _opt_time(e.get("lastReset"))) for e in pages]

    def grants(self) -> list[Grant]:
        """Every grant, voided ones and those of deleted entitlements too."""
        return [grant_of(g) for g in self._pages(self.api.list_grants, order_by="createdAt", include_deleted=True)]

    def balances_at(self, ent: Entitlement, at: datetime) -> dict[str, Decimal]:
        """Per-grant balances at the start of the minute `at` (the source's burn-down history)."""
        history = self.api.get_entitlement_history(ent.subject_key, ent.id, window_size="MINUTE",
                                                   from_parameter=at, to=at + timedelta(minutes=1))
        segments = history.get("burndownHistory") or []
        if not segments:
            return {}
        return {k: amount(v) for k, v in (segments[0].get("grantBalancesAtStart") or {}).items()}

    def meter_subjects(self, meter: Meter) -> list[str]:
        return list(self.api.list_meter_subjects(meter.id))

    def usage(self, meter: Meter, subject: str) -> list[UsageMinute]:
        """The subject's minute values of the meter, by every group of the meter, from its first data on."""
        return self.usage_of(meter, [subject])[subject]

    def usage_of(self, meter: Meter, subjects: Sequence[str]) -> dict[str, list[UsageMinute]]:
        """`usage` of several subjects in one meter query (grouped by subject too): one request for many
        subjects, where the source's cost is mostly per request."""
        wanted = list(dict.fromkeys(subjects))
        found = self.api.query_meter(meter.id, window_size="MINUTE", subject=wanted,
                                     group_by=["subject", *sorted(meter.group_by)])
        out: dict[str, list[UsageMinute]] = {s: [] for s in wanted}
        for row in found.get("data") or []:
            who = row.get("subject") or (wanted[0] if len(wanted) == 1 else None)
            if who not in out:
                raise ValueError(f"meter {meter.slug!r}: a row of subject {who!r} answered a query for "
                                 f"{len(wanted)} subjects")
            groups = {k: v for k, v in (row.get("groupBy") or {}).items() if k != "subject"}
            out[who].append(UsageMinute(subject=who, groups=groups, minute=_time(row["windowStart"]),
                                        value=amount(row["value"])))
        return out


def meter_of(m: dict[str, Any], now: datetime) -> Meter:
    created = _opt_time(m.get("createdAt")) or now
    return Meter(id=m["id"], slug=m["slug"], description=m.get("description"), event_type=m["eventType"],
                 aggregation=m["aggregation"], value_property=m.get("valueProperty"),
                 group_by=dict(m.get("groupBy") or {}), window_size=m.get("windowSize") or "MINUTE",
                 created_at=created, updated_at=_opt_time(m.get("updatedAt")) or created)


def feature_of(f: dict[str, Any]) -> Feature:
    return Feature(id=f["id"], key=f["key"], name=f["name"], metadata=dict(f.get("metadata") or {}),
                   meter_slug=f.get("meterSlug"), meter_group_by_filters=dict(f.get("meterGroupByFilters") or {}),
                   archived_at=_opt_time(f.get("archivedAt")), created_at=_time(f["createdAt"]),
                   updated_at=_time(f["updatedAt"]))


def subject_of(s: dict[str, Any], now: datetime) -> Subject:
    created = _opt_time(s.get("createdAt")) or now
    return Subject(id=s.get("id") or new_id(), key=s["key"], display_name=s.get("displayName"),
                   metadata=dict(s.get("metadata") or {}), created_at=created,
                   updated_at=_opt_time(s.get("updatedAt")) or created)


def _config(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str) else value


def entitlement_of(e: dict[str, Any]) -> Entitlement:
    kind = str(e["type"]).upper()
    period = e.get("usagePeriod") or {}
    metered = kind == "METERED"
    return Entitlement(
        id=e["id"], type=kind, subject_key=e["subjectKey"], feature_id=e["featureId"], feature_key=e["featureKey"],
        metadata=dict(e.get("metadata") or {}), config=_config(e.get("config")) if kind == "STATIC" else None,
        is_soft_limit=bool(e.get("isSoftLimit")) if metered else False,
        usage_period_interval=period.get("interval") if metered else None,
        usage_period_anchor=_opt_time(period.get("anchor")) if metered else None,
        measure_usage_from=_opt_time(e.get("measureUsageFrom")) if metered else None,
        issue_after_reset=_opt_amount(e.get("issueAfterReset")) if metered else None,
        issue_after_reset_priority=e.get("issueAfterResetPriority") if metered else None,
        created_at=_time(e["createdAt"]), updated_at=_time(e["updatedAt"]), deleted_at=_opt_time(e.get("deletedAt")))


def grant_of(g: dict[str, Any]) -> Grant:
    expiration = g.get("expiration") or {}
    recurrence = g.get("recurrence") or {}
    return Grant(
        id=g["id"], entitlement_id=g["entitlementId"], amount=amount(g["amount"]), priority=int(g.get("priority", 1)),
        effective_at=_time(g["effectiveAt"]), expiration_duration=expiration["duration"],
        expiration_count=int(expiration["count"]), expires_at=_time(g["expiresAt"]),
        recurrence_interval=recurrence.get("interval"), recurrence_anchor=_opt_time(recurrence.get("anchor")),
        min_rollover=amount(g.get("minRolloverAmount", 0)), max_rollover=amount(g.get("maxRolloverAmount", 0)),
        metadata=dict(g.get("metadata") or {}), voided_at=_opt_time(g.get("voidedAt")),
        created_at=_time(g["createdAt"]), updated_at=_time(g["updatedAt"]))
