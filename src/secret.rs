//! Secrets (the API token, SSH passwords, Jupyter tokens) in a type that
//! never prints them, and where the daemon reads them from.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serializer};

/// A string that `Debug` and `Display` print as `[redacted]`. It has no
/// `Serialize`: writing one out takes [`Secret::expose`] or [`serialize_exposed`],
/// on purpose and where a reader can see it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// For the one writer that must send a secret: the fake MatrixDC server.
pub fn serialize_exposed<S: Serializer>(secret: &Secret, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&secret.0)
}

/// Where a secret comes from: an environment variable, a file (systemd
/// `LoadCredential=`), or, for a database URL only, the policy file itself.
/// Written `{env: VARIABLE}`, `{file: PATH}` or as the text; any text is
/// taken, so no decoding error ever repeats it.
#[derive(Clone, Debug, PartialEq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
    Value(Secret),
}

impl SecretSource {
    /// Reads the secret; the error names the source, never the value.
    pub fn read(&self) -> Result<Secret, SecretError> {
        let value = match self {
            SecretSource::Env(var) => std::env::var(var).map_err(|_| SecretError::Unset(var.clone()))?,
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| SecretError::Unreadable { path: path.clone(), why: e.to_string() })?,
            SecretSource::Value(secret) => secret.expose().to_owned(),
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(match self {
                SecretSource::Env(var) => SecretError::EmptyVariable(var.clone()),
                SecretSource::File(path) => SecretError::EmptyFile(path.clone()),
                SecretSource::Value(_) => SecretError::EmptyValue,
            });
        }
        Ok(Secret::new(value))
    }
}

/// Why a secret could not be read: names its source, never a value.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    Unset(String),
    #[error("environment variable {0} is empty")]
    EmptyVariable(String),
    #[error("cannot read {}: {why}", path.display())]
    Unreadable { path: PathBuf, why: String },
    #[error("{} is empty", .0.display())]
    EmptyFile(PathBuf),
    #[error("the value is empty")]
    EmptyValue,
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SecretSource;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("{env: VARIABLE}, {file: PATH} or the value")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SecretSource, E> {
                Ok(SecretSource::Value(Secret::new(v)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<SecretSource, A::Error> {
                let expected = || serde::de::Error::custom("expected env or file");
                let key = map.next_key::<String>()?.ok_or_else(expected)?;
                let value: String = map.next_value()?;
                match key.as_str() {
                    "env" => Ok(SecretSource::Env(value)),
                    "file" => Ok(SecretSource::File(value.into())),
                    _ => Err(expected()),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let secret = Secret::new("kEyIX5R2dqJD");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&secret)), "Some([redacted])");
        assert_eq!(secret.expose(), "kEyIX5R2dqJD");
    }
}
