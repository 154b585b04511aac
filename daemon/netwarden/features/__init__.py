"""Feature schemas: what is computed for each flow, with names, units and meaning."""
