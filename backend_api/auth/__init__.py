"""Who is calling: the signed session cookie, the internal callers' scopes and the replay ledger."""
