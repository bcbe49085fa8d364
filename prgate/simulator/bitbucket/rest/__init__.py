"""Bitbucket REST 2.0 handlers, one module per resource."""
