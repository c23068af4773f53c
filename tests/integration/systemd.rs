//! The unit file: `systemd-analyze verify` clean, and exposure 2.0 or lower
//! by `systemd-analyze security --offline=yes`.

use std::process::Command;

fn unit() -> std::path::PathBuf {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/mdc-autoscaler.service")).unwrap();
    for needed in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "LoadCredential=mdc-token:",
        "StateDirectory=mdc-autoscaler",
        "LimitNOFILE=",
        "MemoryMax=",
        "TasksMax=",
    ] {
        assert!(text.contains(needed), "the unit lacks {needed}");
    }
    // verify checks that ExecStart exists: point it at the binary under test.
    let text = text.replace("/usr/local/bin/mdc-autoscaler", env!("CARGO_BIN_EXE_mdc-autoscaler"));
    let dir = std::env::temp_dir().join(format!("mdc-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mdc-autoscaler.service");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_unit_verifies_clean() {
    let out = Command::new("systemd-analyze").arg("verify").arg(unit()).output().expect("systemd-analyze is installed");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
}

#[test]
fn the_unit_is_hardened() {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(unit())
        .output()
        .expect("systemd-analyze is installed");
    let said = String::from_utf8_lossy(&out.stdout);
    let level: f64 = said
        .lines()
        .find_map(|l| l.split("Overall exposure level for mdc-autoscaler.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{said}"));
    assert!(level <= 2.0, "exposure {level}");
    assert!(out.status.success(), "over the threshold:\n{said}");
}
