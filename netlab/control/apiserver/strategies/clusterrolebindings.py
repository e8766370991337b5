"""Clusterrolebindings: a roleRef that never changes, subjects checked as upstream's (strategies/rbac.py)."""

from netlab.control.apiserver.strategies.rbac import BindingStrategy as Strategy

__all__ = ["Strategy"]
