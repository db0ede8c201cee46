//! Token secrets: made here (the state machine has no randomness), stored as a salted hash,
//! checked in constant time.
//!
//! A secret id is `<accessor>.<secret>`: the accessor finds the one stored hash to compare,
//! the secret (256 random bits) is what proves possession. An operator-chosen initial
//! management token (`acl.initial_management_token`, for automation) is any string of at
//! least [`MIN_CHOSEN_LEN`] characters without a dot; its accessor is derived from it.
//! Only SHA-256(salt ‖ secret) travels through the log; with 256 bits of entropy no slow
//! hash is needed to resist guessing, and the salt keeps equal secrets from showing.

use conclave_state::acl::Token;
use ring::rand::{SecureRandom, SystemRandom};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_hex(len: usize) -> Result<String, ring::error::Unspecified> {
    let mut buf = vec![0u8; len];
    SystemRandom::new().fill(&mut buf)?;
    Ok(hex(&buf))
}

fn hash(salt: &str, secret: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(salt.as_bytes());
    ctx.update(secret.as_bytes());
    hex(ctx.finish().as_ref())
}

/// A new token (to store) and its secret id (to show once).
pub struct Minted {
    pub token: Token,
    pub secret_id: conclave_types::Secret,
}

/// Make a token holding `policies`.
pub fn mint(
    description: String,
    policies: Vec<String>,
    created_ms: u64,
    expires_ms: Option<u64>,
) -> Result<Minted, ring::error::Unspecified> {
    let accessor_id = random_hex(16)?;
    let secret = random_hex(32)?;
    let salt = random_hex(16)?;
    let token = Token {
        secret_hash: hash(&salt, &secret),
        salt,
        accessor_id: accessor_id.clone(),
        description,
        policies,
        created_ms,
        expires_ms,
    };
    Ok(Minted {
        token,
        secret_id: conclave_types::Secret::new(format!("{accessor_id}.{secret}")),
    })
}

/// The shortest operator-chosen secret accepted.
pub const MIN_CHOSEN_LEN: usize = 32;

/// The accessor of an operator-chosen secret: 128 bits of its SHA-256, hex.
fn derived_accessor(secret: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    hex(&digest.as_ref()[..16])
}

/// The accessor a secret id names and the part that proves it, if it has either shape.
fn parts(secret_id: &str) -> Option<(String, &str)> {
    match secret_id.split_once('.') {
        Some((accessor, secret)) if !accessor.is_empty() && !secret.is_empty() => {
            Some((accessor.to_owned(), secret))
        }
        Some(_) => None,
        None if secret_id.len() >= MIN_CHOSEN_LEN => Some((derived_accessor(secret_id), secret_id)),
        None => None,
    }
}

/// The accessor a secret id names, if it has the shape of one.
pub fn accessor_of(secret_id: &str) -> Option<String> {
    parts(secret_id).map(|(accessor, _)| accessor)
}

/// An operator-chosen secret that cannot be one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "an initial management token must be at least {MIN_CHOSEN_LEN} characters, without dots or spaces (e.g. the output of: openssl rand -hex 32)"
)]
pub struct BadChosenSecret;

/// Whether `chosen` can be an operator-chosen secret: long enough, no dot, no space.
pub fn check_chosen(chosen: &str) -> Result<(), BadChosenSecret> {
    if chosen.contains('.')
        || chosen.len() < MIN_CHOSEN_LEN
        || chosen.chars().any(char::is_whitespace)
    {
        return Err(BadChosenSecret);
    }
    Ok(())
}

/// The token of an operator-chosen secret, holding `policies`.
pub fn from_chosen(
    chosen: &str,
    description: String,
    policies: Vec<String>,
    created_ms: u64,
) -> Result<Token, ring::error::Unspecified> {
    let salt = random_hex(16)?;
    Ok(Token {
        accessor_id: derived_accessor(chosen),
        secret_hash: hash(&salt, chosen),
        salt,
        description,
        policies,
        created_ms,
        expires_ms: None,
    })
}

/// Whether `secret_id` is `token`'s secret. Constant time in the secret's content.
pub fn matches(secret_id: &str, token: &Token) -> bool {
    let Some((accessor, secret)) = parts(secret_id) else {
        return false;
    };
    if accessor != token.accessor_id {
        return false;
    }
    let got = hash(&token.salt, secret);
    let want = token.secret_hash.as_bytes();
    got.len() == want.len()
        && got
            .as_bytes()
            .iter()
            .zip(want)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_secret_matches_its_token_only() {
        let a = mint("a".into(), vec![], 1, None).expect("mint");
        let b = mint("b".into(), vec![], 1, None).expect("mint");
        let secret = a.secret_id.expose();
        assert!(matches(secret, &a.token));
        assert!(!matches(secret, &b.token));
        assert_eq!(accessor_of(secret), Some(a.token.accessor_id.clone()));
        assert!(
            !a.token
                .secret_hash
                .contains(secret.split_once('.').expect("dot").1)
        );
        // One changed character, a missing part, the hash itself: refused.
        let mut wrong = secret.to_string();
        let last = wrong.pop().expect("char");
        wrong.push(if last == '0' { '1' } else { '0' });
        assert!(!matches(&wrong, &a.token));
        assert!(!matches(&a.token.accessor_id, &a.token));
        let by_hash = format!("{}.{}", a.token.accessor_id, a.token.secret_hash);
        assert!(!matches(&by_hash, &a.token));
        assert_eq!(accessor_of("nodot"), None);
        assert_eq!(accessor_of(".x"), None);
    }

    #[test]
    fn an_operator_chosen_secret_is_found_by_its_derived_accessor() {
        let chosen = "f".repeat(40);
        check_chosen(&chosen).expect("long enough");
        for bad in [
            "short",
            "a.b-with-a-dot-and-long-enough-to-pass-the-length",
            &format!("{} x", "y".repeat(40)),
        ] {
            assert!(check_chosen(bad).is_err(), "{bad}");
        }
        let token = from_chosen(&chosen, "initial".into(), vec![], 1).expect("token");
        assert!(matches(&chosen, &token));
        assert_eq!(accessor_of(&chosen), Some(token.accessor_id.clone()));
        assert!(!matches(&"f".repeat(41), &token));
        assert!(!token.secret_hash.contains(&chosen));
        // The same secret on every node gives the same accessor (each with its own salt).
        let again = from_chosen(&chosen, "initial".into(), vec![], 1).expect("token");
        assert_eq!(again.accessor_id, token.accessor_id);
        assert_ne!(again.salt, token.salt);
    }
}
