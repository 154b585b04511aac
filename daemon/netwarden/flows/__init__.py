"""Flow assembly: bidirectional flows keyed by the canonical 5-tuple plus VLAN."""
