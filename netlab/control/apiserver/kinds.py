"""Each served kind's strategy, found by convention: the module of strategies/ named for the
kind's plural, its class `Strategy`; a kind without a module gets the base strategy. So a new
kind is one entry in netlab/api/resources.py and, if it has rules, one module."""

from __future__ import annotations

import importlib

from netlab.api.resources import RESOURCES, Resource
from netlab.control.apiserver import strategies
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
