//! `validate` on broken files: every expected problem is found, at its line
//! and column, none is invented, and nothing panics. Each file in
//! `tests/fixtures/invalid/` lists what it expects in `# expect:` comments.

use mdc_autoscaler::config::check::Severity;
use mdc_autoscaler::config::load::{load_file, load_str};

#[test]
fn broken_files_report_every_expected_problem() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/invalid");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expected: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .map(|e| {
                let (at, message) = e.split_once(' ').unwrap();
                (at.to_owned(), message.to_owned())
            })
            .collect();
        assert!(!expected.is_empty(), "{} expects nothing", path.display());
        let (config, report) = load_file(&path);
        assert!(config.is_none(), "{} was accepted", path.display());
        let found: Vec<(String, String)> = report
            .diagnostics
            .iter()
            .map(|d| (format!("{}:{}", d.pos.line, d.pos.column), d.message.clone()))
            .collect();
        for (at, message) in &expected {
            assert!(
                found.iter().any(|(a, m)| a == at && m.contains(message.as_str())),
                "{}: expected `{at} {message}`, found:\n{report}",
                path.display()
            );
        }
        let errors = report.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
        let expected_errors = expected.iter().filter(|(_, m)| !m.contains("may select the same")).count();
        assert_eq!(errors, expected_errors, "{}: unexpected errors:\n{report}", path.display());
        for line in report.to_string().lines() {
            assert!(line.starts_with(&format!("{}:", path.display())), "{line}");
        }
        assert!(!report.to_string().contains("sk-live"), "a pasted token is never echoed");
        checked += 1;
    }
    assert!(checked >= 5);
}

#[test]
fn the_example_is_valid_and_uses_every_section() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.yaml");
    let (config, report) = load_file(std::path::Path::new(path));
    let config = config.unwrap_or_else(|| panic!("{report}"));
    assert_eq!(report.errors(), 0, "{report}");
    let notebooks = &config.policies[0];
    let idle = notebooks.idle.as_ref().unwrap();
    assert!(idle.snapshot.is_some() && idle.delete_after_stopped.is_some() && idle.max_runtime.is_some());
    assert!(notebooks.schedule.is_some() && notebooks.budget.is_some() && !notebooks.protect.is_empty());
    let pool = config.policies[1].pool.as_ref().unwrap();
    assert_eq!(pool.clusters.len(), 2);
    assert!(pool.wait_for_discount.is_some() && pool.max_price_per_hour.is_some() && !pool.desired_schedule.is_empty());
    assert!(config.settings.budget.is_some());
    assert_eq!(config.settings.token, mdc_autoscaler::secret::SecretSource::Credential("mdc-token".into()));
}

#[test]
fn arbitrary_text_never_panics() {
    for text in
        ["", "~", "[", "{a: }", "policies: 3", "policies: [3]", "settings: [1]", ":\n:", "policies:\n  - {name: [x]}"]
    {
        let (_, report) = load_str("t.yaml", text);
        let _ = report.to_string();
    }
}

#[test]
fn a_policy_one_edit_from_deleting_the_fleet_is_warned_of() {
    let text = "policies:\n  - name: everything\n    select: {}\n    idle: { stop_after: 1m, delete_after_stopped: 1d, delete_without_snapshot: true }\n";
    let (config, report) = load_str("fleet.yaml", text);
    assert!(config.is_some(), "{report}");
    let said = report.to_string();
    for warning in ["selects every instance and deletes", "deletes without a snapshot"] {
        assert!(said.contains(warning), "no `{warning}` in:\n{said}");
    }
    assert_eq!(report.warnings(), 2, "{said}");
}

#[test]
fn only_a_regular_file_of_bounded_size_is_read() {
    let dir = std::env::temp_dir().join(format!("mdc-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo.yaml");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads the path it is given.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let big = dir.join("big.yaml");
    let line = "# a comment line to make the file large\n";
    let size = mdc_autoscaler::config::load::POLICY_FILE_MAX as usize + 1;
    std::fs::write(&big, line.repeat(size / line.len() + 1)).unwrap();
    for (path, said) in [
        (std::path::PathBuf::from("/dev/zero"), "not a regular file"),
        (fifo, "not a regular file"),
        (big, "larger than 4 MiB"),
    ] {
        let (config, report) = load_file(&path);
        assert!(config.is_none() && report.to_string().contains(said), "{}: {report}", path.display());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_pool_minimum_that_discounts_overrule_is_said_to() {
    let text = "policies:\n  - name: nights\n    pool:\n      cluster: host-cluster\n      image: img\n      desired: 2\n      min: 2\n      max: 4\n      gpu: { products: [H20] }\n      only_during_discount: true\n";
    let (config, report) = load_str("nights.yaml", text);
    assert!(config.is_some(), "{report}");
    assert_eq!(
        report.to_string(),
        "nights.yaml:7:12: warning: only_during_discount outranks min: outside discount windows the pool runs none, not 2\n"
    );
}

/// A channel's URL is a secret, read only on the machine: `validate` says
/// there when it cannot be read or is not https, and `run` refuses to start.
#[test]
fn a_channel_url_unreadable_or_not_https_is_found_on_the_machine() {
    use mdc_autoscaler::config::environment::{Context, check};
    let url = std::env::temp_dir().join(format!("mdc-hook-url-{}", crate::ledger_contract::uuid_like()));
    std::fs::write(&url, "http://hooks.example.com/x\n").unwrap();
    let smtp = std::env::temp_dir().join(format!("mdc-smtp-url-{}", crate::ledger_contract::uuid_like()));
    std::fs::write(&smtp, "smtp://u:hunter2@mail.example.com?tls=opportunistic\n").unwrap();
    let text = format!(
        "settings:\n  token: {{ file: /etc/hostname }}\n  ledger: {{ url: \"sqlite:///tmp/x.db\" }}\n  notify:\n    channels:\n      - {{ name: plain, kind: slack, url: {{ file: {} }} }}\n      - {{ name: gone, kind: wecom, url: {{ env: MDC_TEST_NO_SUCH_VARIABLE }} }}\n      - {{ name: mail, kind: email, url: {{ file: {} }}, from: a@example.com, to: [b@example.com] }}\npolicies: []\n",
        url.display(),
        smtp.display()
    );
    let (config, report) = load_str("notify.yaml", &text);
    let config = config.unwrap_or_else(|| panic!("{report}"));
    let found: Vec<String> =
        check(&config, &Context::Here).into_iter().map(|f| format!("{}: {}", f.key.join("."), f.message)).collect();
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("settings.notify.channels.0.url: the url of channel `plain` must be https://")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|f| f.starts_with("settings.notify.channels.1.url: cannot read the url of channel `gone`")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|f| f.starts_with("settings.notify.channels.2.url: the url of channel `mail` must use TLS")),
        "{found:?}"
    );
    assert!(
        !found.iter().any(|f| f.contains("hooks.example.com") || f.contains("hunter2")),
        "a channel's URL is never repeated: {found:?}"
    );
}

/// Replicas elect their leader on PostgreSQL: asked for on SQLite, `run`
/// refuses and `validate` says so; on PostgreSQL it is on unasked.
#[test]
fn replicas_asked_for_on_a_sqlite_ledger_are_refused() {
    use mdc_autoscaler::config::environment::{Context, check};
    let text = "settings:\n  token: { file: /etc/hostname }\n  ledger: { url: \"sqlite:///tmp/x.db\" }\n  ha: { enabled: true }\npolicies: []\n";
    let (config, report) = load_str("ha.yaml", text);
    let config = config.unwrap_or_else(|| panic!("{report}"));
    let found: Vec<String> =
        check(&config, &Context::Here).into_iter().map(|f| format!("{}: {}", f.key.join("."), f.message)).collect();
    assert!(
        found.iter().any(|f| f.starts_with("settings.ha.enabled: replicas elect their leader on a PostgreSQL ledger")),
        "{found:?}"
    );
    let ha = &config.settings.ha;
    assert!(ha.elects("sqlite:///tmp/x.db"), "asked for");
    let (config, _) = load_str("ha.yaml", "policies: []\n");
    let ha = config.unwrap().settings.ha;
    assert!(ha.elects("postgres://db/ledger") && !ha.elects("sqlite:///tmp/x.db"), "the default follows the ledger");
    assert_eq!((ha.observe_every, ha.try_every), (5, chrono::Duration::seconds(5)));
}
