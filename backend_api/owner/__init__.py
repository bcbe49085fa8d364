"""The owner API and the operator dashboard: who may do what, and the owner's exemption of a PR."""
