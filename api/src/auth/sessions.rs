//! Logins: after the hub's OAuth callback, a person is known by a session cookie. The cookie holds
//! a random session id and its HMAC-SHA256 under the service's key, so a forged id is refused
//! without a lookup; the session itself (user, groups, CSRF token, expiry) stays in memory, so a
//! logout ends it and a copied cookie no longer works. A restart asks people to log in again (the
//! hub remembers them, so it is one redirect).
//!
//! The login's own short-lived cookie carries the OAuth `state` and where to go afterwards, signed
//! the same way.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{HubUser, random_hex};
use crate::config::Secret;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "kiln-session";
/// The login cookie's name (state and the page to return to).
pub const LOGIN_COOKIE: &str = "kiln-login";
/// How long a login may take, from the redirect to the hub to the callback.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);
/// Sessions kept at most (the oldest end first).
const MAX_SESSIONS: usize = 100_000;

#[derive(Clone, Debug)]
pub struct Session {
    pub user: HubUser,
    /// Sent back by the page in `X-Kiln-CSRF` on every state-changing call.
    pub csrf: String,
    pub expires: Instant,
}

pub struct Sessions {
    key: Secret,
    lifetime: Duration,
    live: Mutex<HashMap<String, Session>>,
}

/// `value.signature`, the signature being HMAC-SHA256 of `purpose` and `value` under `key`.
pub fn sign(key: &Secret, purpose: &str, value: &str) -> String {
    format!("{value}.{}", hex::encode(mac(key, purpose, value)))
}

/// The value of a signed text, when its signature is right (compared in constant time).
pub fn verify<'a>(key: &Secret, purpose: &str, signed: &'a str) -> Option<&'a str> {
    let (value, signature) = signed.rsplit_once('.')?;
    let signature = hex::decode(signature).ok()?;
    let mut check = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).ok()?;
    check.update(purpose.as_bytes());
    check.update(&[0]);
    check.update(value.as_bytes());
    check.verify_slice(&signature).ok()?;
    Some(value)
}

fn mac(key: &Secret, purpose: &str, value: &str) -> Vec<u8> {
    // Any key length is valid for HMAC.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()) else {
        return Vec::new();
    };
    mac.update(purpose.as_bytes());
    mac.update(&[0]);
    mac.update(value.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Sessions {
    pub fn new(key: Secret, lifetime: Duration) -> Sessions {
        Sessions {
            key,
            lifetime,
            live: Mutex::new(HashMap::new()),
        }
    }

    /// A new session for `user`: the cookie's value and the session.
    pub fn start(&self, user: HubUser) -> Result<(String, Session), getrandom::Error> {
        let id = random_hex(24)?;
        let session = Session {
            user,
            csrf: random_hex(24)?,
            expires: Instant::now() + self.lifetime,
        };
        let mut live = lock(&self.live);
        let now = Instant::now();
        if live.len() >= MAX_SESSIONS {
            live.retain(|_, s| s.expires > now);
            if live.len() >= MAX_SESSIONS
                && let Some(oldest) = live
                    .iter()
                    .min_by_key(|(_, s)| s.expires)
                    .map(|(k, _)| k.clone())
            {
                live.remove(&oldest);
            }
        }
        live.insert(id.clone(), session.clone());
        Ok((sign(&self.key, SESSION_COOKIE, &id), session))
    }

    /// The live session a cookie names; `None` for a forged, ended or expired one.
    pub fn find(&self, cookie: &str) -> Option<Session> {
        let id = verify(&self.key, SESSION_COOKIE, cookie)?;
        let mut live = lock(&self.live);
        match live.get(id) {
            Some(session) if session.expires > Instant::now() => Some(session.clone()),
            Some(_) => {
                live.remove(id);
                None
            }
            None => None,
        }
    }

    /// End the session a cookie names (logout).
    pub fn end(&self, cookie: &str) {
        if let Some(id) = verify(&self.key, SESSION_COOKIE, cookie) {
            lock(&self.live).remove(id);
        }
    }

    /// The login cookie's value for one login: its `state`, the page to return to, and the time.
    pub fn login_cookie(&self, state: &str, next: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let value = format!("{state}|{now}|{}", hex::encode(next));
        sign(&self.key, LOGIN_COOKIE, &value)
    }

    /// The page to return to, when the login cookie is genuine, recent, and made for `state`.
    pub fn check_login(&self, cookie: &str, state: &str) -> Result<String, &'static str> {
        let value = verify(&self.key, LOGIN_COOKIE, cookie)
            .ok_or("the login cookie is not one this service made")?;
        let mut parts = value.splitn(3, '|');
        let (Some(expected), Some(at), Some(next)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("the login cookie is not one this service made");
        };
        use subtle::ConstantTimeEq;
        if expected.len() != state.len() || !bool::from(expected.as_bytes().ct_eq(state.as_bytes()))
        {
            return Err("the login's state does not match the one this browser started");
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let at: u64 = at.parse().map_err(|_| "the login cookie is damaged")?;
        if now.saturating_sub(at) > LOGIN_TTL.as_secs() {
            return Err("the login took too long; start it again");
        }
        let next = hex::decode(next).map_err(|_| "the login cookie is damaged")?;
        String::from_utf8(next).map_err(|_| "the login cookie is damaged")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> HubUser {
        HubUser {
            name: "alice".into(),
            groups: vec![],
        }
    }

    #[test]
    fn forged_ended_and_foreign_cookies_are_refused() {
        let sessions = Sessions::new(Secret::new("k".repeat(64)), Duration::from_secs(60));
        let (cookie, session) = sessions.start(user()).unwrap();
        assert_eq!(sessions.find(&cookie).unwrap().user, session.user);
        let (id, signature) = cookie.rsplit_once('.').unwrap();
        let mut forged = signature.to_string();
        forged.replace_range(0..1, if &signature[..1] == "0" { "1" } else { "0" });
        assert!(sessions.find(&format!("{id}.{forged}")).is_none());
        assert!(sessions.find(id).is_none(), "an unsigned id");
        let other = Sessions::new(Secret::new("j".repeat(64)), Duration::from_secs(60));
        assert!(other.find(&cookie).is_none(), "another key's cookie");
        sessions.end(&cookie);
        assert!(sessions.find(&cookie).is_none(), "a replay after logout");
    }

    #[test]
    fn login_state_must_match_and_be_recent() {
        let sessions = Sessions::new(Secret::new("k".repeat(64)), Duration::from_secs(60));
        let cookie = sessions.login_cookie("abc123", "/services/kiln/v2/gh/a/b/HEAD");
        assert_eq!(
            sessions.check_login(&cookie, "abc123").unwrap(),
            "/services/kiln/v2/gh/a/b/HEAD"
        );
        assert!(sessions.check_login(&cookie, "abc124").is_err());
        let stale = sign(
            &Secret::new("k".repeat(64)),
            LOGIN_COOKIE,
            &format!("abc123|{}|{}", 1, hex::encode("/")),
        );
        assert!(
            sessions
                .check_login(&stale, "abc123")
                .unwrap_err()
                .contains("too long")
        );
    }
}
