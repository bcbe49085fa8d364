"""Tests of the simulated providers served beside GitHub."""
