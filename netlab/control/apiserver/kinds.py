"""Each served kind's strategy. A built-in kind's is found by convention: the module of
strategies/ named for the kind's plural, its class `Strategy`; a kind without a module gets the
base strategy. So a new kind is one entry in netlab/api/resources.py and, if it has rules, one
module. The custom resources of the Established CRDs come from customresources.py."""

from __future__ import annotations

import importlib

from netlab.api import resources
from netlab.api.resources import RESOURCES, Resource
from netlab.control.apiserver import customresources, strategies
from netlab.control.apiserver.strategies import base


def strategy_class(r: Resource) -> type[base.Strategy]:
    name = f"{strategies.__name__}.{r.plural}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise  # the module exists but imports something missing
        return base.Strategy
    return module.Strategy


def strategies_for(ctx: base.Context) -> dict[Resource, base.Strategy]:
    return {r: strategy_class(r)(r, ctx) for r in RESOURCES}


class Kinds:
    """The kinds served now, built-in and custom, and their strategies."""

    def __init__(self, ctx: base.Context):
        self.builtin = strategies_for(ctx)
        self.custom = customresources.Registry(ctx)
        self.listeners: list = []  # called with each kind written (the authorizer's cache of RBAC)

    def lookup(self, group: str, version: str, plural: str) -> Resource | None:
        r = resources.lookup(group, version, plural)
        return r if r is not None else self.custom.lookup(group, version, plural)

    def strategy(self, r: Resource) -> base.Strategy:
        s = self.builtin.get(r)
        return s if s is not None else self.custom.strategy(r)

    def served(self) -> list[Resource]:
        return RESOURCES + self.custom.resources()

    def changed(self, r: Resource) -> None:
        """A write to `r`: a CRD's changes what is served."""
        if r.group == "apiextensions.k8s.io":
            self.custom.invalidate()
        for f in self.listeners:
            f(r)
