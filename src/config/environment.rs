//! What `run` needs from the machine beyond a valid file: its secrets
//! readable and the ledger's directory there. `run` refuses to start
//! without them; `validate`, run from a shell, says so beforehand (a
//! systemd credential read where the installed unit loads it from).

use std::path::Path;

use super::check::Severity;
use super::load::Finding;
use super::policy::{Config, STATE_DIRECTORY, TOKEN_OVERRIDE, default_ledger};
use crate::secret::{SecretSource, Unit};

/// Where `run` is to run.
pub enum Context {
    /// Here: this process's environment and credentials.
    Here,
    /// Under the installed unit, when one is found; checked from a shell,
    /// which reads a credential where the unit loads it from.
    Unit(Option<Unit>),
}

/// What `run` would refuse, as errors.
pub fn check(config: &Config, context: &Context) -> Vec<Finding> {
    let mut needs = Vec::new();
    let settings = &config.settings;
    // The service has no MDC_TOKEN of a shell's: checked from one, the token is what the unit gives.
    let token = match context {
        Context::Here => settings.read_token(),
        Context::Unit(_) => settings.token.read(),
    };
    if let Err(problem) = token {
        needs.push(Finding {
            key: key(&["settings", "token"]),
            severity: Severity::Error,
            message: format!(
                "cannot read the API token: {problem}: `run` refuses to start; from a shell, \
                 {TOKEN_OVERRIDE} in the environment overrides settings.token"
            ),
        });
    }
    if let Some(admin) = &settings.admin_token {
        let hint = "; without admin_token the write endpoints answer 401";
        readable(admin, &["settings", "admin_token"], "the admin token", hint, &mut needs);
    }
    for (index, channel) in settings.channels.iter().enumerate() {
        let index = index.to_string();
        let at = |field| key(&["settings", "notify", "channels", &index, field]);
        let name = crate::text::Shown(&channel.name);
        match channel.url.read() {
            Err(problem) => needs.push(Finding {
                key: at("url"),
                severity: Severity::Error,
                message: format!("cannot read the url of channel `{name}`: {problem}: `run` refuses to start"),
            }),
            Ok(url) if let Some(problem) = channel.kind.url_problem(url.expose().trim()) => needs.push(Finding {
                key: at("url"),
                severity: Severity::Error,
                message: format!("the url of channel `{name}` {problem}"),
            }),
            Ok(_) => {}
        }
        if let Some(secret) = &channel.secret {
            readable(
                secret,
                &["settings", "notify", "channels", &index, "secret"],
                &format!("the secret of channel `{name}`"),
                "",
                &mut needs,
            );
        }
    }
    match &settings.ledger.url {
        Some(url) => {
            let hint = "; without ledger.url the ledger is SQLite in the state directory";
            readable(url, &["settings", "ledger", "url"], "the ledger's URL", hint, &mut needs);
        }
        None => {
            let file = default_ledger();
            let dir = file.parent().unwrap_or(Path::new(STATE_DIRECTORY));
            let made_by_unit = matches!(context, Context::Unit(Some(unit)) if unit.state_directory)
                && std::env::var_os("STATE_DIRECTORY").is_none();
            if !dir.is_dir() && !made_by_unit {
                needs.push(Finding {
                    key: key(&["settings", "ledger"]),
                    severity: Severity::Error,
                    message: format!(
                        "the SQLite ledger's directory {} does not exist: the unit creates it \
                         (StateDirectory=mdc-autoscaler); elsewhere `run` refuses to start until it is \
                         created or settings.ledger.url is set",
                        dir.display()
                    ),
                });
            }
        }
    }
    if settings.ha.enabled == Some(true) {
        let postgres = match &settings.ledger.url {
            Some(url) => url.read().is_ok_and(|url| super::policy::is_postgres(url.expose())),
            None => false,
        };
        if !postgres {
            needs.push(Finding {
                key: key(&["settings", "ha", "enabled"]),
                severity: Severity::Error,
                message: "replicas elect their leader on a PostgreSQL ledger: with SQLite one daemon runs alone, \
                          so `run` refuses; set settings.ledger.url to a postgres:// URL, or drop ha.enabled"
                    .into(),
            });
        }
    }
    needs
}

fn readable(source: &SecretSource, at: &[&str], what: &str, hint: &str, needs: &mut Vec<Finding>) {
    if let Err(problem) = source.read() {
        let message = format!("cannot read {what}: {problem}: `run` refuses to start{hint}");
        needs.push(Finding { key: key(at), severity: Severity::Error, message });
    }
}

fn key(path: &[&str]) -> Vec<String> {
    path.iter().map(|k| (*k).to_owned()).collect()
}
