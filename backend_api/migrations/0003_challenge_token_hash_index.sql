-- Every verification page load and submit looks a challenge up by its token hash.
-- Unique is safe: tokens carry 256 random bits, and NULLs (exemption rows) never collide.
CREATE UNIQUE INDEX challenges_token_hash_idx ON challenges (token_hash);
