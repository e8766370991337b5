"""Clusterroles: rules checked as upstream's rbac validation (strategies/rbac.py)."""

from netlab.control.apiserver.strategies.rbac import RoleStrategy as Strategy

__all__ = ["Strategy"]
