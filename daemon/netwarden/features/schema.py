"""Feature schema identity: an id, ordered feature names and a hash over both.

A model's manifest names the schema id and hash it was trained on; the scorer refuses a model
whose schema does not match the running one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One feature: its name (as in the reference tool), unit and meaning."""

    name: str
    unit: str
    doc: str


@dataclass(frozen=True, slots=True)
class FeatureSchema:
    """An ordered, versioned list of features."""

    id: str
    features: tuple[FeatureSpec, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def hash(self) -> str:
        """sha256 over the id and the ordered names (units included: a unit change is a new schema).

        >>> s = FeatureSchema("x-v1", (FeatureSpec("a", "s", "doc"),))
        >>> len(s.hash)
        64
        """
        h = hashlib.sha256(self.id.encode())
        for f in self.features:
            h.update(b"\0" + f.name.encode() + b"\0" + f.unit.encode())
        return h.hexdigest()

    def __len__(self) -> int:
        return len(self.features)

    def index(self, name: str) -> int:
        return self.names.index(name)
