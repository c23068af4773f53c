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

/// Where a secret comes from: an environment variable, a file, a systemd
/// credential (`LoadCredential=NAME:PATH`, read from `$CREDENTIALS_DIRECTORY`),
/// or, for a database URL only, the policy file itself. Written
/// `{env: VARIABLE}`, `{file: PATH}`, `{credential: NAME}` or as the text; any
/// text is taken, so no decoding error ever repeats it.
#[derive(Clone, Debug, PartialEq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
    Credential(String),
    Value(Secret),
}

/// Where systemd puts a service's credentials.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

impl SecretSource {
    /// Reads the secret; the error names the source, never the value.
    pub fn read(&self) -> Result<Secret, SecretError> {
        let value = match self {
            SecretSource::Env(var) => std::env::var(var).map_err(|_| SecretError::Unset(var.clone()))?,
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| SecretError::Unreadable { path: path.clone(), why: e.to_string() })?,
            SecretSource::Credential(name) => {
                let path = match std::env::var_os(CREDENTIALS_DIRECTORY) {
                    Some(dir) => PathBuf::from(dir).join(name),
                    // Outside the service (a shell): where the installed unit loads it from.
                    None => {
                        let unit = Unit::installed().ok_or_else(|| SecretError::NoUnit(name.clone()))?;
                        let loaded = unit.credentials.iter().find(|(n, _)| n == name);
                        let (_, from) = loaded
                            .ok_or_else(|| SecretError::NotLoaded { unit: unit.path.clone(), name: name.clone() })?;
                        from.clone()
                    }
                };
                std::fs::read_to_string(&path).map_err(|e| SecretError::Unreadable { path, why: e.to_string() })?
            }
            SecretSource::Value(secret) => secret.expose().to_owned(),
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(match self {
                SecretSource::Env(var) => SecretError::EmptyVariable(var.clone()),
                SecretSource::File(path) => SecretError::EmptyFile(path.clone()),
                SecretSource::Credential(name) => SecretError::EmptyFile(name.into()),
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
    #[error(
        "`{0}` is a systemd credential: not in the service ($CREDENTIALS_DIRECTORY is unset), \
         and no unit is installed to say where it comes from (LoadCredential={0}:PATH)"
    )]
    NoUnit(String),
    #[error("the unit {} loads no credential `{name}` (LoadCredential={name}:PATH)", unit.display())]
    NotLoaded { unit: PathBuf, name: String },
}

/// What an installed unit file says about credentials and state.
#[derive(Clone, Debug, Default)]
pub struct Unit {
    pub path: PathBuf,
    /// `LoadCredential=NAME:PATH`.
    pub credentials: Vec<(String, PathBuf)>,
    /// `StateDirectory=mdc-autoscaler`: systemd creates it.
    pub state_directory: bool,
}

/// Where the unit is installed, the first found winning as it does for systemd.
pub const UNIT_PATHS: [&str; 3] = [
    "/etc/systemd/system/mdc-autoscaler.service",
    "/usr/local/lib/systemd/system/mdc-autoscaler.service",
    "/lib/systemd/system/mdc-autoscaler.service",
];

impl Unit {
    pub fn installed() -> Option<Unit> {
        UNIT_PATHS.iter().find_map(|p| Unit::read(std::path::Path::new(p)))
    }

    /// The unit file with its drop-ins (`NAME.service.d/*.conf`, as `systemctl edit` writes them).
    pub fn read(path: &std::path::Path) -> Option<Unit> {
        let mut text = std::fs::read_to_string(path).ok()?;
        let mut drop_ins: Vec<PathBuf> = std::fs::read_dir(format!("{}.d", path.display()))
            .map(|dir| dir.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "conf")).collect())
            .unwrap_or_default();
        drop_ins.sort();
        for drop_in in drop_ins {
            text += &std::fs::read_to_string(drop_in).unwrap_or_default();
        }
        let mut unit = Unit { path: path.to_owned(), ..Unit::default() };
        for line in text.lines().map(str::trim) {
            if let Some((name, from)) = line.strip_prefix("LoadCredential=").and_then(|c| c.split_once(':')) {
                unit.credentials.push((name.to_owned(), from.into()));
            }
            unit.state_directory |= line.strip_prefix("StateDirectory=").is_some_and(|d| d.trim() == "mdc-autoscaler");
        }
        Some(unit)
    }
}

impl schemars::JsonSchema for SecretSource {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SecretSource".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let one = |key: &str, what: &str| {
            serde_json::json!({
                "type": "object",
                "properties": { key: { "type": "string", "description": what } },
                "required": [key],
                "additionalProperties": false,
            })
        };
        schemars::json_schema!({
            "description": "A secret: {env: VARIABLE}, {file: PATH}, {credential: NAME} (systemd's LoadCredential=), or, for the ledger URL only, the text itself",
            "anyOf": [
                one("env", "an environment variable"),
                one("file", "a file holding it (trailing newline ignored)"),
                one("credential", "a systemd credential, read from $CREDENTIALS_DIRECTORY"),
                { "type": "string" },
            ],
        })
    }
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SecretSource;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("{env: VARIABLE}, {file: PATH}, {credential: NAME} or the value")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SecretSource, E> {
                Ok(SecretSource::Value(Secret::new(v)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<SecretSource, A::Error> {
                let expected = || serde::de::Error::custom("expected env, file or credential");
                let key = map.next_key::<String>()?.ok_or_else(expected)?;
                let value: String = map.next_value()?;
                match key.as_str() {
                    "env" => Ok(SecretSource::Env(value)),
                    "file" => Ok(SecretSource::File(value.into())),
                    "credential" => Ok(SecretSource::Credential(value)),
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

    #[test]
    fn a_unit_says_where_its_credentials_come_from_drop_ins_too() {
        let dir = std::env::temp_dir().join(format!("mdc-unit-read-{}", std::process::id()));
        let unit = dir.join("mdc-autoscaler.service");
        std::fs::create_dir_all(dir.join("mdc-autoscaler.service.d")).unwrap();
        std::fs::write(
            &unit,
            "[Service]\nLoadCredential=mdc-token:/etc/mdc-autoscaler/token\nStateDirectory=mdc-autoscaler\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("mdc-autoscaler.service.d/override.conf"),
            "[Service]\nLoadCredential=database-url:/etc/mdc-autoscaler/database-url\n",
        )
        .unwrap();
        let read = Unit::read(&unit).unwrap();
        let names: Vec<&str> = read.credentials.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["mdc-token", "database-url"]);
        assert!(read.state_directory);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
