//! Snooze links: a token that names one instance and when it expires,
//! signed with a key derived from the API token, so that replicas share it,
//! no other instance is reachable with it, and rotating the API token
//! revokes every link.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::secret::Secret;

/// Where the daemon serves the snooze page: this, then the token.
pub const SNOOZE_PATH: &str = "/snooze/";

/// How long a link in a message works.
pub const LINK_LIFETIME: Duration = Duration::days(7);

/// Signs and checks snooze tokens.
#[derive(Clone)]
pub struct Links {
    key: [u8; 32],
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Links { key: <redacted> }")
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this link is not one the autoscaler made")]
    Malformed,
    #[error("this link was not signed by this autoscaler, or was changed")]
    Forged,
    #[error("this link expired at {0}")]
    Expired(DateTime<Utc>),
}

impl Links {
    pub fn new(api_token: &Secret) -> Links {
        Links { key: super::platform::hmac(api_token.expose().as_bytes(), b"mdc-autoscaler snooze links v1") }
    }

    /// A token for `instance`, good until `expires`.
    pub fn token(&self, instance: &str, expires: DateTime<Utc>) -> String {
        let name = BASE64URL.encode(instance);
        let expires = expires.timestamp();
        format!("{name}.{expires}.{}", BASE64URL.encode(self.mac(instance, expires).finalize().into_bytes()))
    }

    /// The snooze page of `instance` under `public_url`.
    pub fn url(&self, public_url: &str, instance: &str, expires: DateTime<Utc>) -> String {
        format!("{public_url}{SNOOZE_PATH}{}", self.token(instance, expires))
    }

    /// The instance a token names, if it is genuine and not expired at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<String, LinkError> {
        let mut parts = token.split('.');
        let (Some(name), Some(expires), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(LinkError::Malformed);
        };
        let instance =
            BASE64URL.decode(name).ok().and_then(|n| String::from_utf8(n).ok()).ok_or(LinkError::Malformed)?;
        let expires: i64 = expires.parse().map_err(|_| LinkError::Malformed)?;
        let signature = BASE64URL.decode(signature).map_err(|_| LinkError::Malformed)?;
        // Constant time: a forger learns nothing from how long a refusal takes.
        self.mac(&instance, expires).verify_slice(&signature).map_err(|_| LinkError::Forged)?;
        let expires = DateTime::from_timestamp(expires, 0).ok_or(LinkError::Malformed)?;
        if now >= expires {
            return Err(LinkError::Expired(expires));
        }
        Ok(instance)
    }

    fn mac(&self, instance: &str, expires: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(format!("snooze\n{instance}\n{expires}").as_bytes());
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(token: &str) -> Links {
        Links::new(&Secret::new(token))
    }

    #[test]
    fn a_token_opens_its_instance_only_until_it_expires() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let links = keyed("api-token");
        let token = links.token("instance-a", now + Duration::hours(1));
        assert_eq!(links.verify(&token, now), Ok("instance-a".into()));
        assert!(matches!(links.verify(&token, now + Duration::hours(1)), Err(LinkError::Expired(_))));
        // Another instance's name, a later expiry, another key: refused.
        let (_, rest) = token.split_once('.').unwrap();
        let other = format!("{}.{rest}", BASE64URL.encode("instance-b"));
        assert_eq!(links.verify(&other, now), Err(LinkError::Forged));
        let parts: Vec<&str> = token.split('.').collect();
        let later = format!("{}.{}.{}", parts[0], now.timestamp() + 86_400 * 365, parts[2]);
        assert_eq!(links.verify(&later, now), Err(LinkError::Forged));
        assert_eq!(keyed("rotated").verify(&token, now), Err(LinkError::Forged));
        for junk in ["", "a.b", "a.b.c.d", "!!.1.x", &format!("{}.soon.{}", parts[0], parts[2])] {
            assert_eq!(links.verify(junk, now), Err(LinkError::Malformed), "{junk}");
        }
    }
}
