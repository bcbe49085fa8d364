"""The GitHub half of the simulator: its model, state, rendering, REST and control routes."""
