//! Secrets (broker passwords, the cluster's shutdown token): how they are read and how they
//! are kept out of everything plumbline prints or writes.
//!
//! A [`Secret`] comes from `file:PATH` or `env:VAR`, never from the command line itself (a
//! process list shows argv to anyone on the host), and it cannot be printed, debug-printed
//! or serialized: only [`Secret::expose`] reads it, where a client hands it to its broker.
//! [`redact_url`] blanks the password of a URL's `user:password@`, for every place that
//! echoes what was typed (error messages, a report's command line). [`admits`] judges a token
//! a peer presented (a join, a shutdown, a `/metrics` scrape), in constant time. Nothing here
//! sends a secret.

use std::fmt;

/// What stands in for a secret wherever one would show.
pub const REDACTED: &str = "***";

/// A password or token: never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// Reads `file:PATH` (its first line, without the line end) or `env:VAR`. The error names
    /// the source, never a secret; anything else is refused, so a secret typed on the command
    /// line is not taken.
    pub fn from_source(source: &str) -> Result<Secret, String> {
        let value = if let Some(path) = source.strip_prefix("file:") {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading the secret file {path}: {e}"))?;
            text.lines().next().unwrap_or("").to_string()
        } else if let Some(var) = source.strip_prefix("env:") {
            std::env::var(var).map_err(|_| format!("the variable {var} is not set"))?
        } else {
            return Err(
                "give file:PATH or env:VAR, so the secret never shows in a process list".into(),
            );
        };
        if value.is_empty() {
            return Err(format!("{source} is empty"));
        }
        Ok(Secret(value))
    }

    /// The secret itself, for the one call that presents it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

/// Whether a peer's token lets it in: anything goes where there is no token to want;
/// otherwise only the same secret, compared in time independent of where they differ and of
/// how long the guess is: `subtle`'s slice compare returns at once on a length mismatch
/// (telling a prober the token's length), so both are hashed to SHA-256 first and it always
/// compares 32 bytes to 32 (a collision is out of reach, so equal digests mean equal secrets).
pub fn admits(want: Option<&str>, given: Option<&str>) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let digest = |s: &str| Sha256::digest(s.as_bytes());
    match (want, given) {
        (None, _) => true,
        (Some(want), Some(given)) => digest(want).ct_eq(&digest(given)).into(),
        (Some(_), None) => false,
    }
}

/// `text` with the password of every `scheme://user:password@` in it replaced by
/// [`REDACTED`]; text without one comes back unchanged.
pub fn redact_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority = tail.find(['/', '?', '#', ' ']).unwrap_or(tail.len());
        match tail[..authority].rfind('@') {
            Some(end) => {
                let userinfo = &tail[..end];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..=colon]);
                        out.push_str(REDACTED);
                    }
                    None => out.push_str(userinfo),
                }
                rest = &tail[end..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let secret = Secret::new("hunter2");
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn secrets_come_from_files_and_variables_only() {
        let dir = std::env::temp_dir().join(format!("plumbline-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let from_file = Secret::from_source(&format!("file:{}", file.display())).unwrap();
        assert_eq!(from_file.expose(), "s3cret");
        std::env::set_var("PLUMBLINE_TEST_SECRET", "fromenv");
        let from_env = Secret::from_source("env:PLUMBLINE_TEST_SECRET").unwrap();
        assert_eq!(from_env.expose(), "fromenv");

        let typed = Secret::from_source("hunter2").unwrap_err();
        assert!(typed.contains("file:PATH or env:VAR") && !typed.contains("hunter2"));
        let unset = Secret::from_source("env:PLUMBLINE_NOT_SET_ANYWHERE").unwrap_err();
        assert!(
            unset.contains("PLUMBLINE_NOT_SET_ANYWHERE is not set"),
            "{unset}"
        );
        std::fs::write(&file, "\n").unwrap();
        let empty = Secret::from_source(&format!("file:{}", file.display())).unwrap_err();
        assert!(empty.contains("is empty"), "{empty}");
        let missing = Secret::from_source("file:/nonexistent/pw").unwrap_err();
        assert!(missing.contains("/nonexistent/pw"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn urls_lose_their_passwords_and_keep_the_rest() {
        for (text, shown) in [
            ("redis://:pw@h:1/s", "redis://:***@h:1/s"),
            (
                "rediss://user:p%40ss@h:1/s?mode=pubsub",
                "rediss://user:***@h:1/s?mode=pubsub",
            ),
            ("nats://user@h:1/s", "nats://user@h:1/s"),
            ("kafka://u:pw@a:1,b:2/t", "kafka://u:***@a:1,b:2/t"),
            ("redis://h:1/s", "redis://h:1/s"),
            (
                "--to=redis://:a@h:1/x then nats://u:b@h:2/y",
                "--to=redis://:***@h:1/x then nats://u:***@h:2/y",
            ),
            ("no url here", "no url here"),
            ("tcp://h:1/mail@x", "tcp://h:1/mail@x"),
        ] {
            assert_eq!(redact_url(text), shown, "{text}");
        }
    }

    #[test]
    fn with_a_token_only_the_same_secret_is_admitted() {
        assert!(admits(Some("s3cret"), Some("s3cret")));
        assert!(!admits(Some("s3cret"), Some("s3cres")));
        assert!(!admits(Some("s3cret"), Some("s3cret ")));
        // Lengths differ either way, the empty token included: still refused.
        assert!(!admits(Some("s3cret"), Some("s3cre")));
        assert!(!admits(Some("s3cret"), Some("")));
        assert!(!admits(Some("s3cret"), None));
    }

    #[test]
    fn without_a_token_every_peer_is_admitted() {
        assert!(admits(None, None));
        assert!(admits(None, Some("anything")));
    }
}
