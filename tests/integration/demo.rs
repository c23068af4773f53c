//! The README's first command, `mdc-autoscaler demo`: the
//! decisions it promises are narrated, its state directory holds nothing
//! it did not write, and `spend` on its ledger tells the money it printed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::ledger_contract::uuid_like;
use crate::processes::{Daemon, until};

fn demo(state_dir: &Path, stdout: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mdc-autoscaler"));
    command
        .args(["demo", "--speed", "600", "--state-dir"])
        .arg(state_dir)
        .env("NO_COLOR", "1")
        .stdout(std::fs::File::create(stdout).unwrap())
        .stderr(Stdio::null());
    command
}

/// `policy -> spend` from the lines `  notebooks  spent ¥6.92, saved ...`.
fn spent(summary: &str) -> BTreeMap<String, String> {
    summary
        .lines()
        .filter_map(|l| {
            let (key, rest) = l.trim().split_once(" spent ¥")?;
            Some((key.trim().to_owned(), rest.split_once(',')?.0.to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn demo_narrates_the_busy_notebook_and_its_ledger_tells_the_same_spend() {
    let dir = std::env::temp_dir().join(format!("mdc-demo-{}", uuid_like()));
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    // A directory an earlier demo made: its leftovers are the demo's to replace.
    std::fs::write(state.join(".mdc-autoscaler-demo"), "").unwrap();
    std::fs::write(state.join("ledger.db"), "not a database").unwrap();
    let out = dir.join("stdout");
    let mut child = Daemon(demo(&state, &out).spawn().unwrap());
    let read = || std::fs::read_to_string(&out).unwrap_or_default();
    // 22:30 Beijing time in simulated time: the schedule stop is the last promise.
    until("the demo's schedule stop", 60, || async { read().contains("stopped dev-monthly-erin [dev]") }).await;
    child.signal("INT");
    assert!(child.exited().await.success(), "{}", read());
    let text = read();
    for promised in [
        "stopped, with a snapshot, nb-bob [notebooks]",
        "left alone: nb-alice [notebooks]: in use by jupyter",
        "left alone: nb-keep-carol: not stopped",
        "left alone: dev-monthly-erin: not stopped",
        "waiting for the discount on SKU 66 (4090)",
        "created on SKU 66 batch-0 [batch]",
        "`batch` daily budget",
        "the simulated cloud billed",
    ] {
        assert!(text.contains(promised), "the demo did not narrate {promised:?}:\n{text}");
    }

    let command = text
        .lines()
        .skip_while(|l| !l.starts_with("The same from the demo's ledger"))
        .nth(1)
        .unwrap_or_else(|| panic!("no spend command printed:\n{text}"));
    // `  mdc-autoscaler spend --config PATH --since 'A' --until 'B'`
    let parts: Vec<&str> = command.split('\'').collect();
    let config = parts[0].split_whitespace().nth(3).unwrap_or_else(|| panic!("{command}"));
    let (since, until) = (parts[1], parts[3]);
    let spend = Command::new(env!("CARGO_BIN_EXE_mdc-autoscaler"))
        .args(["spend", "--config", config, "--since", since, "--until", until, "--output", "json"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(spend.status.success(), "{}", String::from_utf8_lossy(&spend.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&spend.stdout).unwrap();
    let from_ledger: BTreeMap<String, String> = rows
        .iter()
        .filter(|r| r["key"] != "total")
        .map(|r| (r["key"].as_str().unwrap().to_owned(), format!("{:.2}", r["spend_yuan"].as_f64().unwrap())))
        .collect();
    let printed = spent(&text);
    assert!(printed.contains_key("notebooks") && printed.contains_key("batch"), "{text}");
    assert_eq!(from_ledger, printed, "`{command}` disagrees with the demo's summary");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn demo_leaves_a_directory_it_did_not_make_untouched() {
    let dir = std::env::temp_dir().join(format!("mdc-demo-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ledger.db"), "someone's ledger").unwrap();
    let out = dir.join("stdout");
    let done = demo(&dir, &out).stderr(Stdio::piped()).output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(!done.status.success());
    assert!(stderr.contains("ledger.db was not written by the demo") && stderr.contains("--state-dir"), "{stderr}");
    assert_eq!(std::fs::read_to_string(dir.join("ledger.db")).unwrap(), "someone's ledger");
    assert!(!dir.join("token").exists() && !dir.join(".mdc-autoscaler-demo").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
