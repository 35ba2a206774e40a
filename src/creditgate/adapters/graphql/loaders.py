"""Per-request DataLoaders (info.context.loaders): batch what a query's fields ask for."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from strawberry.dataloader import DataLoader

from creditgate.adapters.graphql.context import Info
from creditgate.records import Entitlement, Feature, Grant
from creditgate.services import entitlements as ent_svc
from creditgate.services import features as feature_svc
from creditgate.services import grants as grant_svc
from creditgate.services import values as value_svc
from creditgate.services.runtime import Runtime

K = TypeVar("K")
V = TypeVar("V")


def _get(info: Info, name: str, make: Callable[[Runtime], DataLoader[Any, Any]]) -> DataLoader[Any, Any]:
    loaders = info.context.loaders
    found = loaders.get(name)
    if found is None:
        found = loaders[name] = make(info.context.rt)
    return found


def _loader(fn: Callable[[Sequence[K]], Awaitable[Sequence[V]]],
            key: Callable[[K], Any] | None = None) -> DataLoader[K, V]:
    async def load(keys: list[K]) -> list[V]:
        return list(await fn(keys))
    return DataLoader(load_fn=load, cache_key_fn=key)


def features(info: Info) -> DataLoader[str, Feature | None]:
    def make(rt: Runtime) -> DataLoader[str, Feature | None]:
        async def load(ids: Sequence[str]) -> list[Feature | None]:
            found = await feature_svc.features_by_ids(rt, ids)
            return [found.get(i) for i in ids]
        return _loader(load)
    return _get(info, "features", make)


def grants(info: Info) -> DataLoader[str, list[Grant]]:
    def make(rt: Runtime) -> DataLoader[str, list[Grant]]:
        async def load(ids: Sequence[str]) -> list[list[Grant]]:
            found = await grant_svc.grants_of(rt, list(ids))
            return [found.get(i, []) for i in ids]
        return _loader(load)
    return _get(info, "grants", make)


def usage_periods(info: Info) -> DataLoader[Entitlement, ent_svc.UsagePeriods]:
    """The period fields of METERED entitlements (services compute them)."""
    def make(rt: Runtime) -> DataLoader[Entitlement, ent_svc.UsagePeriods]:
        async def load(ents: Sequence[Entitlement]) -> list[ent_svc.UsagePeriods]:
            found = await ent_svc.usage_periods_of(rt, ents)
            return [found[e.id] for e in ents]
        return _loader(load, key=lambda e: e.id)
    return _get(info, "usage_periods", make)


def values(info: Info) -> DataLoader[tuple[Entitlement, datetime | None], value_svc.EntValue]:
    def make(rt: Runtime) -> DataLoader[tuple[Entitlement, datetime | None], value_svc.EntValue]:
        async def load(keys: Sequence[tuple[Entitlement, datetime | None]]) -> list[value_svc.EntValue]:
            return await value_svc.values_of(rt, keys)
        return _loader(load, key=lambda k: (k[0].id, k[1]))
    return _get(info, "values", make)


def subject_entitlements(info: Info) -> DataLoader[tuple[str, bool], list[Entitlement]]:
    def make(rt: Runtime) -> DataLoader[tuple[str, bool], list[Entitlement]]:
        async def load(keys: Sequence[tuple[str, bool]]) -> list[list[Entitlement]]:
            out: dict[tuple[str, bool], list[Entitlement]] = {}
            for flag in {k[1] for k in keys}:
                subjects = [k[0] for k in keys if k[1] == flag]
                for sub, ents in (await ent_svc.entitlements_of_subjects(rt, subjects, flag)).items():
                    out[(sub, flag)] = ents
            return [out.get(k, []) for k in keys]
        return _loader(load)
    return _get(info, "subject_entitlements", make)


def access(info: Info) -> DataLoader[tuple[str, str, datetime | None], value_svc.Access]:
    def make(rt: Runtime) -> DataLoader[tuple[str, str, datetime | None], value_svc.Access]:
        async def load(keys: Sequence[tuple[str, str, datetime | None]]) -> list[value_svc.Access]:
            out: dict[tuple[str, str, datetime | None], value_svc.Access] = {}
            for at in {k[2] for k in keys}:
                pairs = [(k[0], k[1]) for k in keys if k[2] == at]
                for pair, answer in zip(pairs, await value_svc.check_access(rt, pairs, at), strict=True):
                    out[(pair[0], pair[1], at)] = answer
            return [out[k] for k in keys]
        return _loader(load)
    return _get(info, "access", make)
