"""One strategy per kind: the module named for the kind's plural (pods.py for `pods`) holds a
class `Strategy` deriving from base.Strategy; a kind without a module gets the base. kinds.py
finds them."""
