-- Tokens of the team server kept in the store (`runner token create`): a name, a role, the
-- sha256 of the secret (the secret itself is shown once and never stored), when it expires and
-- whether it was revoked. A revoked token stays listed, so the history's actors keep a meaning.

CREATE TABLE api_tokens (
    name        TEXT PRIMARY KEY,
    role        TEXT NOT NULL CHECK (role IN ('read', 'write', 'promote', 'deploy', 'ingest', 'admin')),
    digest      TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    expires_at  TEXT,
    revoked_at  TEXT,
    revoked_by  TEXT
);
