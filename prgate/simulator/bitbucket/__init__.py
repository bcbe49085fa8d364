"""The Bitbucket Cloud simulator, mounted under ``/bitbucket`` of the simulator (docs/bitbucket.md)."""
