"""Browser-facing pages: GitHub sign-in and the verification page (docs/verification.md)."""
