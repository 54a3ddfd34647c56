//! Tokens of the team server kept in the store, once for both backends: created with the
//! sha256 of their secret (never the secret), listed, revoked, found by digest. Whether a token
//! is still valid (revoked, expired) is the caller's to decide from the record.

use super::Backend;
use crate::store::sql::{Row, all, args, first};
use crate::store::{ApiToken, NewToken, Result, StoreError, TokenStore};

const TOKEN_COLUMNS: &str =
    "name, role, created_at, created_by, expires_at, revoked_at, revoked_by FROM api_tokens";

fn token(row: &dyn Row) -> Result<ApiToken> {
    Ok(ApiToken {
        name: row.text(0)?,
        role: row.text(1)?,
        created_at: row.text(2)?,
        created_by: row.text(3)?,
        expires_at: row.opt_text(4)?,
        revoked_at: row.opt_text(5)?,
        revoked_by: row.opt_text(6)?,
    })
}

impl<B: Backend> TokenStore for B {
    fn create_token(&self, new: &NewToken) -> Result<ApiToken> {
        self.write(|db| {
            let taken = first(
                db,
                "SELECT 1 FROM api_tokens WHERE name = $1 OR digest = $2",
                args![&new.name, &new.digest],
                |r| r.int(0),
            )?;
            if taken.is_some() {
                return Err(StoreError::TokenExists {
                    name: new.name.clone(),
                });
            }
            let now = crate::model::now();
            db.exec(
                "INSERT INTO api_tokens (name, role, digest, created_at, created_by, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                args![
                    &new.name,
                    &new.role,
                    &new.digest,
                    &now,
                    &new.created_by,
                    &new.expires_at
                ],
            )?;
            Ok(ApiToken {
                name: new.name.clone(),
                role: new.role.clone(),
                created_at: now,
                created_by: new.created_by.clone(),
                expires_at: new.expires_at.clone(),
                revoked_at: None,
                revoked_by: None,
            })
        })
    }

    fn api_tokens(&self) -> Result<Vec<ApiToken>> {
        self.read(|db| {
            all(
                db,
                &format!("SELECT {TOKEN_COLUMNS} ORDER BY name"),
                &[],
                token,
            )
        })
    }

    fn revoke_token(&self, name: &str, actor: &str) -> Result<bool> {
        self.write(|db| {
            let changed = db.exec(
                "UPDATE api_tokens SET revoked_at = $1, revoked_by = $2 \
                 WHERE name = $3 AND revoked_at IS NULL",
                args![&crate::model::now(), actor, name],
            )?;
            Ok(changed > 0)
        })
    }

    fn token_by_digest(&self, digest: &str) -> Result<Option<ApiToken>> {
        self.read(|db| {
            first(
                db,
                &format!("SELECT {TOKEN_COLUMNS} WHERE digest = $1"),
                args![digest],
                token,
            )
        })
    }
}
