"""Provider-neutral parts of the simulator: faults, rate limits, request records, control routes."""
