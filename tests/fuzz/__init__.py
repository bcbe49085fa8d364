"""Bad input at scale: schema-driven webhook fuzzing, schemathesis, tamper tests (docs/fuzzing.md)."""
