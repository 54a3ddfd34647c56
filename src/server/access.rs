//! Who may do what: the token files `runner serve` reads (`Tokens`), the access each token gives
//! (`Access`), and why a file is refused (`TokenError`). Below both the API (`serve`) and the
//! web UI (`ui`), which check requests and sessions against it; it speaks no HTTP.

use crate::model::{NameKind, check_name};
use crate::store::TagRole;
use sha2::{Digest, Sha256};

/// Tokens shorter than this are refused when the token file is read: a guessable token is no
/// authentication.
pub const MIN_TOKEN_CHARS: usize = 16;

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// GET (and HEAD) only.
    ReadOnly,
    ReadWrite,
    /// Read-write, and moves protected tags without force (a `deploy:NAME:TOKEN` line).
    Deploy,
    /// What an application needs (an `ingest:NAME:TOKEN` line): reads prompts, sends traces
    /// (`POST /v1/traces`) and feedback (the annotation routes), and nothing else.
    Ingest,
    /// Read-write, and moves a protected tag only through a promotion the server evaluates
    /// and passes (`POST /v1/promotions`): never by hand, not even with force. What a CI job
    /// gets (a token of the store, `runner token create NAME --role promote`).
    Promote,
    /// Deploy, and manages tokens; whole-store writes (import, a store copy) too.
    Admin,
}

impl Access {
    /// What a caller with this access may do to a protected tag (the tag policy decides).
    pub fn tag_role(self) -> TagRole {
        match self {
            Access::Deploy | Access::Admin => TagRole::Deploy,
            Access::ReadOnly | Access::ReadWrite | Access::Ingest | Access::Promote => {
                TagRole::Writer
            }
        }
    }

    /// The role's name, as `runner token create --role` takes it.
    pub fn role_name(self) -> &'static str {
        match self {
            Access::ReadOnly => "read",
            Access::ReadWrite => "write",
            Access::Deploy => "deploy",
            Access::Ingest => "ingest",
            Access::Promote => "promote",
            Access::Admin => "admin",
        }
    }

    /// The role a name stands for.
    pub fn from_role_name(name: &str) -> Option<Access> {
        [
            Access::ReadOnly,
            Access::ReadWrite,
            Access::Deploy,
            Access::Ingest,
            Access::Promote,
            Access::Admin,
        ]
        .into_iter()
        .find(|a| a.role_name() == name)
    }

    /// Whether the role writes (versions, unprotected tags, experiments).
    pub fn writes(self) -> bool {
        matches!(
            self,
            Access::ReadWrite | Access::Deploy | Access::Promote | Access::Admin
        )
    }
}

/// The prefix of a deploy token's line: `deploy:NAME:TOKEN`.
const DEPLOY_PREFIX: &str = "deploy:";
/// The prefix of an ingest token's line: `ingest:NAME:TOKEN`.
const INGEST_PREFIX: &str = "ingest:";

/// The accepted bearer tokens, kept only as sha256 digests so that comparing them takes the
/// same time whatever the presented token's length or content.
#[derive(Default)]
pub struct Tokens {
    entries: Vec<TokenEntry>,
}

struct TokenEntry {
    name: Option<String>,
    digest: [u8; 32],
    access: Access,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum TokenError {
    #[error("line {line}: a token needs at least {MIN_TOKEN_CHARS} characters")]
    Short { line: usize },
    #[error("line {line}: a token may not contain spaces")]
    Whitespace { line: usize },
    #[error("line {line}: this token is already listed (a token has one name and one access)")]
    Duplicate { line: usize },
    #[error("no tokens (every line is blank or a # comment)")]
    Empty,
    #[error(
        "line {line}: a deploy token (deploy:NAME:TOKEN) may move protected tags, so it belongs in \
         --token-file, not --read-token-file"
    )]
    DeployReadOnly { line: usize },
    #[error(
        "line {line}: invalid deploy token name '{name}': letters, digits, '_', '-' and '.' only"
    )]
    DeployName { line: usize, name: String },
    #[error(
        "line {line}: invalid ingest token name '{name}': letters, digits, '_', '-' and '.' only"
    )]
    IngestName { line: usize, name: String },
}

impl Tokens {
    /// Adds the tokens of one file: one per line, `TOKEN` or `NAME:TOKEN` (NAME made of letters,
    /// digits, `_`, `-`, `.`) with the file's access, or `deploy:NAME:TOKEN` for a deploy token
    /// (in a read-write file only); blank lines and `#` comments ignored. Returns how many were
    /// read. `deploy:TOKEN` (two parts) stays a write token named `deploy`, as it always was.
    /// `ingest:NAME:TOKEN` is an ingest token (for applications) in either file.
    pub fn add_file(&mut self, text: &str, access: Access) -> Result<usize, TokenError> {
        let mut added = 0;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let entry = raw.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let deploy = entry
                .strip_prefix(DEPLOY_PREFIX)
                .and_then(|rest| rest.split_once(':'));
            let ingest = entry
                .strip_prefix(INGEST_PREFIX)
                .and_then(|rest| rest.split_once(':'));
            if let Some((name, _)) = ingest
                && check_name(NameKind::Prompt, name).is_err()
            {
                return Err(TokenError::IngestName {
                    line,
                    name: name.to_string(),
                });
            }
            let (name, token, access) = match deploy {
                Some((name, token)) => {
                    if access == Access::ReadOnly {
                        return Err(TokenError::DeployReadOnly { line });
                    }
                    if check_name(NameKind::Prompt, name).is_err() {
                        return Err(TokenError::DeployName {
                            line,
                            name: name.to_string(),
                        });
                    }
                    (Some(name.to_string()), token, Access::Deploy)
                }
                None if ingest.is_some() => {
                    let (name, token) = ingest.expect("checked");
                    (Some(name.to_string()), token, Access::Ingest)
                }
                None => match entry.split_once(':') {
                    Some((name, token)) if check_name(NameKind::Prompt, name).is_ok() => {
                        (Some(name.to_string()), token, access)
                    }
                    _ => (None, entry, access),
                },
            };
            if token.chars().any(char::is_whitespace) {
                return Err(TokenError::Whitespace { line });
            }
            if token.chars().count() < MIN_TOKEN_CHARS {
                return Err(TokenError::Short { line });
            }
            let digest = digest(token.as_bytes());
            if self.entries.iter().any(|e| e.digest == digest) {
                return Err(TokenError::Duplicate { line });
            }
            self.entries.push(TokenEntry {
                name,
                digest,
                access,
            });
            added += 1;
        }
        if added == 0 {
            return Err(TokenError::Empty);
        }
        Ok(added)
    }

    /// The name and access of the token `presented`, if it is one of these (the web UI's login
    /// checks a token this way before it issues a session).
    pub fn identify(&self, presented: &[u8]) -> Option<(Option<String>, Access)> {
        self.find(presented).map(|e| (e.name.clone(), e.access))
    }

    /// How many tokens allow this access.
    pub fn count(&self, access: Access) -> usize {
        self.entries.iter().filter(|e| e.access == access).count()
    }

    /// The entry whose token is `presented`. Every entry is compared in full, without an early
    /// exit, so the time taken tells nothing about how close a guess was.
    fn find(&self, presented: &[u8]) -> Option<&TokenEntry> {
        let presented = digest(presented);
        let mut found = None;
        for entry in &self.entries {
            let difference = entry
                .digest
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if std::hint::black_box(difference) == 0 {
                found = Some(entry);
            }
        }
        found
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A short fingerprint of a presented token for the log: a wrong token is never written out,
/// not even in part, yet repeated attempts with the same one can be told apart.
pub fn fingerprint(token: &[u8]) -> String {
    crate::model::hex(&digest(token)[..4])
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: &str = "0123456789abcdef0123";
    const RO: &str = "fedcba9876543210fedc";

    #[test]
    fn token_files_read_named_and_bare_tokens() {
        let mut tokens = Tokens::default();
        let text = format!("# deploy tokens\n\nci:{RW}\n  {RO}  \n");
        assert_eq!(tokens.add_file(&text, Access::ReadWrite), Ok(2));
        let named = tokens.find(RW.as_bytes()).expect("named token");
        assert_eq!(named.name.as_deref(), Some("ci"));
        assert_eq!(named.access, Access::ReadWrite);
        assert!(tokens.find(RO.as_bytes()).unwrap().name.is_none());
        assert!(tokens.find(b"ci").is_none());
        assert!(tokens.find(format!("ci:{RW}").as_bytes()).is_none());
        assert!(tokens.find(&RW.as_bytes()[..RW.len() - 1]).is_none());
        assert!(tokens.find(b"").is_none());
    }

    #[test]
    fn deploy_lines_name_deploy_tokens_and_old_lines_keep_their_meaning() {
        const DP: &str = "0011223344556677889900";
        let mut tokens = Tokens::default();
        let text = format!("deploy:release:{DP}\ndeploy:{RW}\n");
        assert_eq!(tokens.add_file(&text, Access::ReadWrite), Ok(2));
        assert_eq!(
            tokens.identify(DP.as_bytes()),
            Some((Some("release".into()), Access::Deploy))
        );
        // Two parts stay what they were: a write token named `deploy`.
        assert_eq!(
            tokens.identify(RW.as_bytes()),
            Some((Some("deploy".into()), Access::ReadWrite))
        );
        assert_eq!(tokens.count(Access::Deploy), 1);
        assert_eq!(Access::Deploy.tag_role(), TagRole::Deploy);
        assert_eq!(Access::ReadWrite.tag_role(), TagRole::Writer);
        // A deploy token is never read-only, and needs a valid name.
        let mut tokens = Tokens::default();
        assert_eq!(
            tokens.add_file(&format!("deploy:release:{DP}"), Access::ReadOnly),
            Err(TokenError::DeployReadOnly { line: 1 })
        );
        assert_eq!(
            tokens.add_file(&format!("# x\ndeploy:a/b:{DP}"), Access::ReadWrite),
            Err(TokenError::DeployName {
                line: 2,
                name: "a/b".into()
            })
        );
        assert_eq!(
            tokens.add_file("deploy:release:short", Access::ReadWrite),
            Err(TokenError::Short { line: 1 })
        );
    }

    #[test]
    fn ingest_lines_name_ingest_tokens_in_either_file() {
        const IN: &str = "9988776655443322110099";
        for access in [Access::ReadWrite, Access::ReadOnly] {
            let mut tokens = Tokens::default();
            assert_eq!(tokens.add_file(&format!("ingest:shop:{IN}"), access), Ok(1));
            assert_eq!(
                tokens.identify(IN.as_bytes()),
                Some((Some("shop".into()), Access::Ingest))
            );
            assert_eq!(tokens.count(Access::Ingest), 1);
        }
        let mut tokens = Tokens::default();
        assert_eq!(
            tokens.add_file(&format!("ingest:a b:{IN}"), Access::ReadWrite),
            Err(TokenError::IngestName {
                line: 1,
                name: "a b".into()
            })
        );
        // Two parts stay a token named `ingest` with the file's access.
        let mut tokens = Tokens::default();
        tokens
            .add_file(&format!("ingest:{IN}"), Access::ReadOnly)
            .unwrap();
        assert_eq!(
            tokens.identify(IN.as_bytes()),
            Some((Some("ingest".into()), Access::ReadOnly))
        );
    }

    #[test]
    fn token_files_refuse_weak_duplicate_or_empty_content() {
        let cases = [
            ("short", TokenError::Short { line: 1 }),
            (
                &format!("# c\n{RW} {RW}") as &str,
                TokenError::Whitespace { line: 2 },
            ),
            (&format!("{RW}\na:{RW}"), TokenError::Duplicate { line: 2 }),
            ("\n# only comments\n", TokenError::Empty),
        ];
        for (text, expected) in cases {
            let mut tokens = Tokens::default();
            assert_eq!(tokens.add_file(text, Access::ReadWrite), Err(expected));
        }
        // The same token cannot be read-write and read-only at once.
        let mut tokens = Tokens::default();
        tokens.add_file(RW, Access::ReadWrite).unwrap();
        assert_eq!(
            tokens.add_file(RW, Access::ReadOnly),
            Err(TokenError::Duplicate { line: 1 })
        );
        assert_eq!(tokens.count(Access::ReadWrite), 1);
        assert_eq!(tokens.count(Access::ReadOnly), 0);
    }
}
