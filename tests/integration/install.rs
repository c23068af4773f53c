//! The README's "Running it for real", step by step with the shipped files:
//! the binary and unit installed into a scratch root, the example policy
//! pointed at `fake-cloud`, the token where the unit loads it from, and the
//! unit's own command line run with the environment and credentials systemd
//! gives it. Then the commands a user runs from a shell read the daemon's
//! ledger and create nothing where they are run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::fake_cloud_process::spawn;
use crate::ledger_contract::uuid_like;
use crate::processes::{Daemon, TOKEN, free_port, until};

const UNIT: &str = include_str!("../../systemd/mdc-autoscaler.service");
const EXAMPLE: &str = include_str!("../../config/example.yaml");

/// The values of `Key=` lines of the unit.
fn unit_lines<'u>(key: &str) -> Vec<&'u str> {
    let prefix = format!("{key}=");
    UNIT.lines().filter_map(|l| l.strip_prefix(prefix.as_str())).collect()
}

struct Root(PathBuf);

impl Root {
    fn new() -> Self {
        Root(std::env::temp_dir().join(format!("mdc-root-{}", uuid_like())))
    }

    /// A path of the real system, inside the scratch root.
    fn at(&self, path: &str) -> PathBuf {
        self.0.join(path.trim_start_matches('/'))
    }

    fn install(&self, from: &Path, to: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let to = self.at(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn write(&self, to: &str, text: &str, mode: u32) {
        let staged = self.0.join("staged");
        std::fs::create_dir_all(&self.0).unwrap();
        std::fs::write(&staged, text).unwrap();
        self.install(&staged, to, mode);
    }

    /// What systemd does before it starts the service: the state directory,
    /// and each `LoadCredential=NAME:PATH` copied to the credentials directory.
    fn as_systemd(&self) -> (PathBuf, PathBuf) {
        let state = self.at("/var/lib/mdc-autoscaler");
        std::fs::create_dir_all(&state).unwrap();
        let credentials = self.at("/run/credentials/mdc-autoscaler.service");
        std::fs::create_dir_all(&credentials).unwrap();
        for line in unit_lines("LoadCredential") {
            let (name, from) = line.split_once(':').unwrap();
            std::fs::copy(self.at(from), credentials.join(name)).unwrap();
        }
        (state, credentials)
    }

    /// The unit's `ExecStart=`, its paths in the scratch root.
    fn exec_start(&self) -> Command {
        let line = unit_lines("ExecStart")[0];
        let mut words = line.split_whitespace().map(|w| if w.starts_with('/') { self.at(w) } else { w.into() });
        let mut command = Command::new(words.next().unwrap());
        command.args(words);
        command
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A user's shell: the token in MDC_TOKEN as the README says, no systemd
/// variables, in a folder of its own.
fn shell(root: &Root, cwd: &Path) -> Command {
    let mut command = Command::new(root.at("/usr/local/bin/mdc-autoscaler"));
    command
        .current_dir(cwd)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("MDC_TOKEN", TOKEN)
        .env("NO_COLOR", "1")
        // The one liberty: the state directory is in the scratch root, not /var/lib.
        .env("STATE_DIRECTORY", root.at("/var/lib/mdc-autoscaler"));
    command
}

#[tokio::test]
async fn the_readme_path_runs_under_the_unit_as_shipped() {
    let (_cloud, api) = spawn(&[], &[]);
    let root = Root::new();
    // 1. Build and install.
    root.install(Path::new(env!("CARGO_BIN_EXE_mdc-autoscaler")), "/usr/local/bin/mdc-autoscaler", 0o755);
    root.write("/etc/systemd/system/mdc-autoscaler.service", UNIT, 0o644);
    // 2. The token, one line, mode 0600.
    root.write("/etc/mdc-autoscaler/token", &format!("{TOKEN}\n"), 0o600);
    // 3. The policy from the example: the namespace set, here the fake cloud's
    //    address and a free port instead of the vendor's and 9187.
    let port = free_port();
    let policy = EXAMPLE
        .replace("https://neolink-ai.com/mdc/api/v1", &api)
        .replace("namespace: your-user-id", "namespace: demo")
        .replace("127.0.0.1:9187", &format!("127.0.0.1:{port}"));
    assert_ne!(policy, EXAMPLE);
    root.write("/etc/mdc-autoscaler/policy.yaml", &policy, 0o644);
    let policy_path = root.at("/etc/mdc-autoscaler/policy.yaml");

    // validate from a shell: no error; the unit's credential is found where the unit loads it.
    let cwd = root.at("/home/user");
    std::fs::create_dir_all(&cwd).unwrap();
    let out = shell(&root, &cwd).args(["validate", "--config"]).arg(&policy_path).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains("error"), "{said}");

    // 4. systemctl enable --now: the unit's command line, its environment and credentials.
    let (state, credentials) = root.as_systemd();
    let log = root.0.join("journal.log");
    let mut daemon = Daemon(
        root.exec_start()
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin")
            .env("STATE_DIRECTORY", &state)
            .env("CREDENTIALS_DIRECTORY", &credentials)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    until("the service to be ready", 60, || async {
        reqwest::get(format!("{base}/readyz")).await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(state.join("mdc-autoscaler.db").exists(), "the ledger is in the state directory");
    assert!(std::fs::read_to_string(&log).unwrap().contains("mdc-autoscaler running"));

    // 7. Watch it from a shell: spend and plan read the daemon's ledger and leave nothing behind.
    let out = shell(&root, &cwd).args(["spend", "--config"]).arg(&policy_path).output().unwrap();
    assert!(out.status.success(), "spend: {}", String::from_utf8_lossy(&out.stderr));
    let out = shell(&root, &cwd).args(["plan", "--config"]).arg(&policy_path).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "plan: {said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!said.contains("could not be read"), "{said}");
    let left: Vec<_> = std::fs::read_dir(&cwd).unwrap().collect();
    assert!(left.is_empty(), "the commands created files where they ran: {left:?}");

    daemon.signal("TERM");
    assert!(daemon.exited().await.success());
}

#[tokio::test]
async fn a_credential_the_service_lacks_exits_78_and_the_unit_does_not_restart_it() {
    assert!(unit_lines("RestartPreventExitStatus").contains(&"78"));
    let root = Root::new();
    root.install(Path::new(env!("CARGO_BIN_EXE_mdc-autoscaler")), "/usr/local/bin/mdc-autoscaler", 0o755);
    root.write("/etc/mdc-autoscaler/policy.yaml", EXAMPLE, 0o644);
    let state = root.at("/var/lib/mdc-autoscaler");
    std::fs::create_dir_all(&state).unwrap();
    let out = root
        .exec_start()
        .env_clear()
        .env("STATE_DIRECTORY", &state)
        .env("CREDENTIALS_DIRECTORY", root.at("/run/credentials/none"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{said}");
    assert!(said.contains("policy.yaml:") && said.contains("error: cannot read the API token"), "{said}");
    assert!(!said.contains(TOKEN));
}

#[test]
fn the_example_reads_the_credentials_the_unit_loads() {
    let loaded: Vec<&str> = unit_lines("LoadCredential").iter().map(|l| l.split_once(':').unwrap().0).collect();
    let named: Vec<&str> = EXAMPLE
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split("credential: ").nth(1))
        .map(|rest| rest.trim_end_matches(|c: char| c == '}' || c.is_whitespace()))
        .collect();
    assert!(!named.is_empty());
    for name in named {
        assert!(loaded.contains(&name), "the example reads credential `{name}`, the unit loads {loaded:?}");
    }
}
