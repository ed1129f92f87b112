//! Temporary credentials issued to execution environments (their execution role's
//! session, as Lambda gives every function).
//!
//! Owns the registry of credentials in force: each environment is issued an access key
//! id (`ASIA...`), a secret and a session token when it starts, through a [`Lease`] that
//! revokes them when the environment ends (dropped, or [`Lease::revoke`]). The API's
//! SigV4 check consults the registry after the server's configured keys (it is a
//! [`Keyring`]), so a request signed with an environment's credentials is accepted
//! while that environment lives, and names its [`Caller`]. The server's own keys are
//! never handed out. Secrets come from the operating system's random source (through
//! version 4 UUIDs).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use crate::sigv4::{Credential, Keyring};

/// Who holds a set of temporary credentials: one execution environment of a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub function: String,
    /// `$LATEST` or a version number.
    pub version: String,
    /// The environment's id.
    pub environment: String,
    /// The function's execution role (as configured; Shoal enforces no policies).
    pub role: String,
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.function, self.version, self.environment)
    }
}

/// Credentials as the SDKs read them (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

struct Issued {
    secret: String,
    session_token: String,
    caller: Arc<Caller>,
}

/// The temporary credentials in force.
#[derive(Default)]
pub struct CredentialRegistry {
    issued: RwLock<HashMap<String, Issued>>,
}

/// Characters of access key ids (as AWS's: upper-case letters and digits).
const KEY_ID_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Characters of secrets and session tokens (64, so a random byte maps without bias).
const SECRET_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `len` characters of `alphabet` (32 or 64 long) drawn from the OS's random source.
fn random_text(len: usize, alphabet: &[u8]) -> String {
    let mask = alphabet.len() as u8 - 1;
    let mut out = String::with_capacity(len);
    while out.len() < len {
        // A v4 UUID: 122 random bits; the 6 fixed ones only narrow two of its 16 bytes.
        for byte in uuid::Uuid::new_v4().into_bytes() {
            if out.len() == len {
                break;
            }
            out.push(alphabet[(byte & mask) as usize] as char);
        }
    }
    out
}

impl CredentialRegistry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Issues credentials to `caller`, in force until the lease is revoked or dropped.
    pub fn issue(self: &Arc<Self>, caller: Caller) -> Lease {
        let mut issued = self.issued.write().unwrap_or_else(|p| p.into_inner());
        let access_key_id = loop {
            let id = format!("ASIA{}", random_text(16, KEY_ID_ALPHABET));
            if !issued.contains_key(&id) {
                break id;
            }
        };
        let credentials = Credentials {
            access_key_id: access_key_id.clone(),
            secret_access_key: random_text(40, SECRET_ALPHABET),
            session_token: random_text(96, SECRET_ALPHABET),
        };
        issued.insert(
            access_key_id,
            Issued {
                secret: credentials.secret_access_key.clone(),
                session_token: credentials.session_token.clone(),
                caller: Arc::new(caller),
            },
        );
        Lease {
            registry: self.clone(),
            credentials,
        }
    }

    /// Who holds `access_key_id`, while it is in force.
    pub fn caller(&self, access_key_id: &str) -> Option<Arc<Caller>> {
        self.issued
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(access_key_id)
            .map(|issued| issued.caller.clone())
    }

    /// How many credentials are in force.
    #[cfg(test)]
    fn in_force(&self) -> usize {
        self.issued.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn revoke(&self, access_key_id: &str) {
        let removed = self
            .issued
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(access_key_id);
        if let Some(issued) = removed {
            tracing::debug!(access_key = access_key_id, caller = %issued.caller, "temporary credentials revoked");
        }
    }
}

impl Keyring for CredentialRegistry {
    fn credential(&self, access_key: &str) -> Option<Credential> {
        self.issued
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(access_key)
            .map(|issued| Credential {
                secret: issued.secret.clone(),
                session_token: Some(issued.session_token.clone()),
            })
    }
}

/// One environment's credentials: in force until revoked or dropped.
pub struct Lease {
    registry: Arc<CredentialRegistry>,
    credentials: Credentials,
}

impl Lease {
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Ends the credentials now (also done when the lease is dropped).
    pub fn revoke(&self) {
        self.registry.revoke(&self.credentials.access_key_id);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.revoke();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(environment: &str) -> Caller {
        Caller {
            function: "f".into(),
            version: "$LATEST".into(),
            environment: environment.into(),
            role: "arn:aws:iam::000000000000:role/r".into(),
        }
    }

    #[test]
    fn issued_credentials_are_in_force_until_revoked() {
        let registry = CredentialRegistry::new();
        let lease = registry.issue(caller("e1"));
        let issued = lease.credentials().clone();
        assert!(issued.access_key_id.starts_with("ASIA"));
        assert_eq!(issued.access_key_id.len(), 20);
        assert_eq!(issued.secret_access_key.len(), 40);
        assert_eq!(
            registry.credential(&issued.access_key_id),
            Some(Credential {
                secret: issued.secret_access_key.clone(),
                session_token: Some(issued.session_token.clone()),
            })
        );
        assert_eq!(
            registry.caller(&issued.access_key_id).as_deref(),
            Some(&caller("e1"))
        );
        lease.revoke();
        assert_eq!(registry.credential(&issued.access_key_id), None);
        assert_eq!(registry.caller(&issued.access_key_id), None);
        // Revoking twice (explicitly, then by dropping) is harmless.
        drop(lease);
        assert_eq!(registry.in_force(), 0);
    }

    #[test]
    fn a_dropped_lease_revokes_only_its_own_credentials() {
        let registry = CredentialRegistry::new();
        let first = registry.issue(caller("e1"));
        let second = registry.issue(caller("e2"));
        let (one, two) = (first.credentials().clone(), second.credentials().clone());
        assert_ne!(one.access_key_id, two.access_key_id);
        assert_ne!(one.secret_access_key, two.secret_access_key);
        assert_ne!(one.session_token, two.session_token);
        drop(first);
        assert_eq!(registry.credential(&one.access_key_id), None);
        assert_eq!(
            registry.caller(&two.access_key_id).map(|c| c.to_string()),
            Some("f:$LATEST/e2".to_string())
        );
        assert_eq!(registry.in_force(), 1);
    }

    #[test]
    fn secrets_use_their_whole_alphabet() {
        // 40 characters a draw: every one of the 64 characters shows up over many.
        let text: String = (0..200).map(|_| random_text(40, SECRET_ALPHABET)).collect();
        for c in SECRET_ALPHABET {
            assert!(text.as_bytes().contains(c), "{} never drawn", *c as char);
        }
        let ids: String = (0..50).map(|_| random_text(16, KEY_ID_ALPHABET)).collect();
        assert!(ids.bytes().all(|b| KEY_ID_ALPHABET.contains(&b)));
    }

    #[test]
    fn configured_keys_come_before_issued_ones() {
        let registry = CredentialRegistry::new();
        let lease = registry.issue(caller("e1"));
        let id = lease.credentials().access_key_id.clone();
        let configured: HashMap<String, String> =
            [(id.clone(), "configured-secret".to_string())].into();
        let keyring = (&configured, &*registry);
        assert_eq!(
            keyring.credential(&id).map(|c| c.secret),
            Some("configured-secret".to_string())
        );
        assert_eq!(keyring.credential("ASIAUNKNOWN"), None);
    }
}
