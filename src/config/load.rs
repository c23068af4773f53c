//! Reading a policy file: YAML → tree → typed sections → checks of meaning,
//! with every problem reported as `file:line:column: message`.

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;

use super::check::{Checker, Diagnostic, Severity};
use super::policy::Config;
use super::raw;
use super::yaml::{self, Loc, Located, Node, Pos, Problem};
use crate::secret::SecretSource;

/// Every problem found in one file, errors and warnings, in file order.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub source: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error).count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Warning).count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            let level = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            writeln!(f, "{}:{}:{}: {level}: {}", self.source, d.pos.line, d.pos.column, d.message)?;
        }
        Ok(())
    }
}

/// The largest policy file read: thousands of policies fit in far less.
pub const POLICY_FILE_MAX: u64 = 4 * 1024 * 1024;

/// Reads and checks a policy file. The config is there only when nothing is
/// an error; warnings may come with it.
pub fn load_file(path: &Path) -> (Option<Config>, Report) {
    let source = path.display().to_string();
    match read_policy_file(path) {
        Ok(text) => load_str(&source, &text),
        Err(error) => {
            let message = error.to_string();
            let report = Report {
                source,
                diagnostics: vec![Diagnostic { pos: Pos { line: 1, column: 1 }, severity: Severity::Error, message }],
            };
            (None, report)
        }
    }
}

/// Why a policy file was not read.
#[derive(Debug, thiserror::Error)]
enum FileError {
    #[error("cannot read the file: {0}")]
    Unreadable(#[from] std::io::Error),
    #[error("not a regular file: a policy file is read whole, from disk")]
    NotARegularFile,
    #[error("the file is larger than {} MiB", POLICY_FILE_MAX / (1024 * 1024))]
    TooLarge,
}

/// A regular file of at most [`POLICY_FILE_MAX`] bytes: a FIFO would hang
/// the reader and `/dev/zero` would fill its memory, so neither is opened.
fn read_policy_file(path: &Path) -> Result<String, FileError> {
    use std::io::Read;
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(FileError::NotARegularFile);
    }
    if meta.len() > POLICY_FILE_MAX {
        return Err(FileError::TooLarge);
    }
    let mut text = String::new();
    std::fs::File::open(path)?.take(POLICY_FILE_MAX + 1).read_to_string(&mut text)?;
    if text.len() as u64 > POLICY_FILE_MAX {
        return Err(FileError::TooLarge);
    }
    Ok(text)
}

/// A problem found beyond the file's text (on the machine, in the cloud),
/// at the key it comes from: map keys, and list indexes as numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub key: Vec<String>,
    pub severity: Severity,
    pub message: String,
}

/// Findings as a report on `path`, each at its key (or the nearest part of it written).
pub fn placed(path: &Path, findings: &[Finding]) -> Report {
    let root = read_policy_file(path).ok().and_then(|text| yaml::parse(&text).ok());
    let start = Pos { line: 1, column: 1 };
    let diagnostics = findings
        .iter()
        .map(|finding| {
            let mut pos = start;
            let mut node = root.as_ref();
            for key in &finding.key {
                node = node.and_then(|n| match (&n.node, key.parse::<usize>()) {
                    (Node::Seq(items), Ok(index)) => items.get(index),
                    _ => n.get(key),
                });
                if let Some(found) = node {
                    pos = found.pos;
                }
            }
            Diagnostic { pos, severity: finding.severity, message: finding.message.clone() }
        })
        .collect();
    Report { source: path.display().to_string(), diagnostics }
}

pub fn load_str(source: &str, text: &str) -> (Option<Config>, Report) {
    let mut checker = Checker::default();
    let config = match yaml::parse(text) {
        Ok(root) => build(&root, &mut checker),
        Err(e) => {
            checker.error(e.pos.unwrap_or(Pos { line: 1, column: 1 }), e.message);
            None
        }
    };
    let mut diagnostics = checker.diagnostics;
    diagnostics.sort();
    diagnostics.dedup();
    let report = Report { source: source.to_owned(), diagnostics };
    (config.filter(|_| report.errors() == 0), report)
}

fn build(root: &Located, checker: &mut Checker) -> Option<Config> {
    let Node::Map(entries) = &root.node else {
        checker.error(root.pos, "the file must be a mapping with `settings` and `policies`");
        return None;
    };
    unknown_keys(entries, &["settings", "policies"], checker);
    let settings_node = root.get("settings");
    let mut raw_settings = match settings_node {
        Some(node) => decode::<raw::Settings>(node, checker).unwrap_or_default(),
        None => raw::Settings::default(),
    };
    let token = settings_node.and_then(|s| s.get("token")).and_then(|n| secret(n, "token", checker));
    let admin_token = settings_node.and_then(|s| s.get("admin_token")).and_then(|n| secret(n, "admin_token", checker));
    let settings_zone = raw_settings.timezone.as_ref().and_then(|z| z.value.parse().ok());
    let prometheus = raw_settings.prometheus.is_some();
    let channel_nodes = settings_node.and_then(|s| s.get("notify")).and_then(|n| n.get("channels"));
    let mut channel_secret = |index: usize, key: &str, checker: &mut Checker| {
        let item = match channel_nodes.map(|n| &n.node) {
            Some(Node::Seq(items)) => items.get(index)?,
            _ => return None,
        };
        match item.get(key) {
            Some(node) => secret(node, &format!("notify.channels[{index}].{key}"), checker),
            None => {
                checker.error(item.pos, format!("a channel needs `{key}`"));
                None
            }
        }
    };
    let channels = checker.channels(std::mem::take(&mut raw_settings.notify.channels), &mut channel_secret);
    let channel_names: Vec<String> = channels.iter().map(|c| c.name.clone()).collect();
    let settings = checker.settings(raw_settings, token, admin_token, channels);

    let mut policies = Vec::new();
    match root.get("policies").map(|p| &p.node) {
        Some(Node::Seq(items)) => {
            for item in items {
                if let Some(raw) = raw_policy(item, checker)
                    && let Some(policy) = checker.policy(raw, settings_zone, prometheus, &channel_names)
                {
                    policies.push((item.pos, policy));
                }
            }
        }
        Some(_) => checker.error(root.get("policies").map_or(root.pos, |p| p.pos), "`policies` must be a list"),
        None => checker.warning(root.pos, "no `policies`: the autoscaler will watch and do nothing"),
    }
    checker.across_policies(&policies);
    Some(Config { settings, policies: policies.into_iter().map(|(_, p)| p).collect() })
}

/// A secret's source, decoded apart from its section so that no error
/// message can repeat a secret pasted inline.
fn secret(node: &Located, key: &str, checker: &mut Checker) -> Option<SecretSource> {
    match yaml::decode::<SecretSource>(node, &mut Vec::new()) {
        Ok(SecretSource::Credential(name)) if name.is_empty() || name.contains('/') || name.starts_with('.') => {
            checker
                .error(node.pos, format!("{key}: a credential is named as in LoadCredential=NAME:PATH, a file name"));
            None
        }
        Ok(source @ (SecretSource::Env(_) | SecretSource::File(_) | SecretSource::Credential(_))) => Some(source),
        Ok(SecretSource::Value(_)) | Err(_) => {
            checker.error(
                node.pos,
                format!(
                    "{key} must be `{{env: VARIABLE}}`, `{{file: /path}}` or `{{credential: NAME}}`, never the secret itself"
                ),
            );
            None
        }
    }
}

fn raw_policy(node: &Located, checker: &mut Checker) -> Option<raw::Policy> {
    let Node::Map(entries) = &node.node else {
        checker.error(node.pos, "a policy must be a mapping with at least `name`");
        return None;
    };
    unknown_keys(entries, &raw::Policy::KEYS, checker);
    let name = match node.get("name") {
        Some(n) => decode::<Loc<String>>(n, checker)?,
        None => {
            checker.error(node.pos, "this policy has no `name`");
            return None;
        }
    };
    let section = |key: &str| node.get(key).cloned();
    Some(raw::Policy {
        select: section("select").and_then(|n| decode(&n, checker)),
        protect: section("protect").and_then(|n| decode(&n, checker)),
        idle: section("idle").and_then(|n| decode(&n, checker)),
        schedule: section("schedule").and_then(|n| decode(&n, checker)),
        pool: section("pool").and_then(|n| decode(&n, checker)),
        budget: section("budget").and_then(|n| decode(&n, checker)),
        max_disrupted: section("max_disrupted").and_then(|n| decode(&n, checker)),
        due_stops: section("due_stops").and_then(|n| decode(&n, checker)),
        notify: section("notify").and_then(|n| decode(&n, checker)),
        name,
    })
}

fn decode<T: DeserializeOwned>(node: &Located, checker: &mut Checker) -> Option<T> {
    let mut problems: Vec<Problem> = Vec::new();
    let result = yaml::decode(node, &mut problems);
    if let Err(problem) = &result {
        problems.push(problem.clone());
    }
    for p in problems {
        checker.error(p.pos, p.message);
    }
    result.ok()
}

fn unknown_keys(entries: &[(Located, Located)], known: &[&str], checker: &mut Checker) {
    for (key, _) in entries {
        let Node::Str(text) = &key.node else { continue };
        if !known.contains(&text.as_str()) {
            checker.error(key.pos, format!("unknown key `{text}`{}", yaml::suggestion(text, known)));
        }
    }
}
