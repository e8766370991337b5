"""Admission plugins, as upstream's API server runs them on a create: each module holds one
plugin, a class `Plugin(store)` with `admit(r, obj)` (mutating: after the defaults, before the
kind's validation) and `validate(r, obj)` (after it, before the write); either raises APIError."""
