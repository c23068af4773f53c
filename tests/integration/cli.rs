//! `validate` and `plan` as users run them: processes, exit codes, output.

use std::process::Command;

use serde_json::Value;

use crate::fake_cloud_process::spawn;

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mdc-autoscaler"));
    command.env("NO_COLOR", "1");
    command
}

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mdc-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn validate_exits_0_on_the_example_and_1_on_errors() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.yaml");
    let out = binary().args(["validate", "--config", example]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 policies"));

    let broken = write("broken", "policies:\n  - name: x\n    select: {}\n    idle: { stop_afer: 1h }\n");
    let out = binary().args(["validate", "--config"]).arg(&broken).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(":4:13: error: unknown key `stop_afer` (did you mean `stop_after`?)"), "{stdout}");

    let warned = write("warned", "policies:\n  - name: a\n    select: {}\n  - name: b\n    select: {}\n");
    let out = binary().args(["validate", "--config"]).arg(&warned).output().unwrap();
    assert!(out.status.success(), "warnings alone exit 0");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("warning: policies `a` and `b` may select the same instances")
    );
}

#[test]
fn plan_shows_what_would_happen_and_does_nothing() {
    let (_server, api) = spawn(&["--manual-clock"], &[]);
    let db =
        std::env::temp_dir().join(format!("mdc-plan-{}.db", crate::ledger_contract::uuid_like())).display().to_string();
    let policy = write(
        "plan",
        &format!(
            r#"settings:
  api: {{ base_url: "{api}", namespace: demo }}
  token: {{ env: TEST_MDC_TOKEN }}
  ledger: {{ url: "sqlite://{db}" }}
policies:
  - name: notebooks
    select: {{ cluster: host-cluster, display_name: "nb-*" }}
    protect: {{ display_name: "nb-keep-*" }}
    idle: {{ signals: [jupyter], stop_after: 30m, snapshot: {{ image: "{{display_name}}", tag: "{{date}}" }} }}
  - name: dev
    select: {{ display_name: "dev-*" }}
    idle: {{ stop_after: 1h }}
  - name: training
    pool: {{ cluster: [host-cluster, bj2-cluster], image: img, desired: 2, gpu: {{ products: [H20, "4090"] }} }}
"#
        ),
    );
    let run = |output: &str| {
        binary()
            .args(["plan", "--output", output, "--config"])
            .arg(&policy)
            .env("TEST_MDC_TOKEN", "demo-token")
            .output()
            .unwrap()
    };
    let out = run("json");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let actions: Vec<(String, String)> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["kind"].as_str().unwrap().to_owned(), a["instance"]["display_name"].as_str().unwrap().to_owned()))
        .collect();
    // nb-bob has been idle for two hours; nb-alice is busy; nb-keep-carol is protected;
    // dev-monthly-erin is prepaid; the pool wants two and has none.
    assert!(actions.contains(&("power_off".into(), "nb-bob".into())), "{actions:?}");
    assert!(actions.contains(&("create".into(), "training-0".into())), "{actions:?}");
    assert!(actions.contains(&("create".into(), "training-1".into())), "{actions:?}");
    assert_eq!(actions.len(), 3, "{actions:?}");
    let bob = plan["actions"].as_array().unwrap().iter().find(|a| a["instance"]["display_name"] == "nb-bob").unwrap();
    assert_eq!(bob["snapshot"]["image"], "nb-bob");
    assert!(bob["saving_per_hour_yuan"].as_f64().unwrap() > 0.0);
    let notes = plan["notes"].to_string();
    assert!(notes.contains("protected by `nb-keep-*`") && notes.contains("prepaid monthly term"), "{notes}");

    let table = run("table");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("power_off + snapshot") && text.contains("nb-bob") && text.contains("Not done, and why:"),
        "{text}"
    );

    // At a later moment, with what is observed now: nb-bob still due, the plan dated then.
    let later = binary()
        .args(["plan", "--output", "json", "--at", "3h", "--config"])
        .arg(&policy)
        .env("TEST_MDC_TOKEN", "demo-token")
        .output()
        .unwrap();
    assert!(later.status.success(), "{}", String::from_utf8_lossy(&later.stderr));
    let later: Value = serde_json::from_slice(&later.stdout).unwrap();
    let at: chrono::DateTime<chrono::Utc> = later["at"].as_str().unwrap().parse().unwrap();
    let ahead = at - chrono::Utc::now();
    assert!(ahead > chrono::Duration::minutes(170) && ahead <= chrono::Duration::hours(3), "{at}");
    assert!(later["actions"].to_string().contains("nb-bob"));
    let past = binary().args(["plan", "--at", "2020-01-01 00:00", "--config"]).arg(&policy).output().unwrap();
    assert!(String::from_utf8_lossy(&past.stderr).contains("is in the past"));

    // Nothing was done: every instance is as it was.
    let again = run("json");
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["actions"].as_array().unwrap().len(), 3);
}

#[test]
fn instances_show_owner_state_activity_and_next_decision() {
    let (_server, api) = spawn(&["--manual-clock"], &[]);
    let policy = write(
        "instances",
        &format!(
            r#"settings:
  api: {{ base_url: "{api}", namespace: demo }}
  token: {{ env: TEST_MDC_TOKEN }}
  listen: 127.0.0.1:1
  ledger: {{ url: "sqlite:///nonexistent/mdc.db" }}
policies:
  - name: notebooks
    select: {{ cluster: host-cluster, display_name: "nb-*" }}
    protect: {{ display_name: "nb-keep-*" }}
    idle: {{ signals: [jupyter], stop_after: 30m }}
  - name: training
    pool: {{ cluster: [host-cluster, bj2-cluster], image: img, desired: 2, gpu: {{ products: [H20, "4090"] }} }}
"#
        ),
    );
    let run = |args: &[&str]| {
        binary()
            .arg("instances")
            .args(args)
            .arg("--config")
            .arg(&policy)
            .env("TEST_MDC_TOKEN", "demo-token")
            .output()
            .unwrap()
    };
    // No daemon answers on port 1: one observation now.
    let out = run(&["--output", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("observed now: no daemon answered at 127.0.0.1:1"));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = |display: &str| rows.as_array().unwrap().iter().find(|r| r["display_name"] == display).cloned().unwrap();
    let alice = row("nb-alice");
    assert_eq!((alice["policy"].as_str(), alice["status"].as_str()), (Some("notebooks"), Some("running")));
    assert_eq!(alice["activity"], serde_json::json!({ "state": "in_use", "signal": "jupyter" }));
    // Idle two hours past a 30-minute timer: powered off now, with the reason.
    let bob = row("nb-bob");
    assert_eq!(
        (bob["activity"]["state"].as_str(), bob["activity"]["signal"].as_str()),
        (Some("idle"), Some("jupyter"))
    );
    assert_eq!(bob["next"]["action"], "power_off");
    assert!(bob["price_yuan_per_hour"].as_f64().unwrap() > 0.0);
    let carol = row("nb-keep-carol");
    assert_eq!((carol["next"].clone(), carol["held"].as_str()), (Value::Null, Some("protected by `nb-keep-*`")));
    assert_eq!(row("training-0")["status"], "not created");
    assert!(row("training-0")["next"]["action"].as_str().unwrap().starts_with("create on SKU"));
    assert_eq!(row("train-llm-0")["policy"], "unmanaged");

    let filtered = run(&["--policy", "notebooks", "--state", "running"]);
    let table = String::from_utf8_lossy(&filtered.stdout);
    assert!(table.contains("idle since") && table.contains("held: protected by `nb-keep-*`"), "{table}");
    assert!(!table.contains("nb-dave") && !table.contains("training-0") && !table.contains("train-llm"), "{table}");
    let unknown = run(&["--policy", "notebook"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no policy `notebook`"));
}

#[test]
fn plan_without_a_token_says_where_it_looked() {
    let policy = write("token", "settings:\n  token: { env: NO_SUCH_TOKEN_VARIABLE }\npolicies: []\n");
    let out = binary().args(["plan", "--config"]).arg(&policy).env_remove("NO_SUCH_TOKEN_VARIABLE").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("environment variable NO_SUCH_TOKEN_VARIABLE is not set"));
}

#[test]
fn validate_online_checks_price_caps_and_overlaps() {
    let (_server, api) = spawn(&["--manual-clock"], &[]);
    let policy = write(
        "online",
        &format!(
            r#"settings:
  api: {{ base_url: "{api}", namespace: demo }}
  token: {{ env: TEST_MDC_TOKEN }}
policies:
  - name: notebooks
    select: {{ display_name: "nb-*" }}
  - name: keepers
    select: {{ display_name: "nb-keep-*" }}
  - name: cheap
    pool: {{ cluster: host-cluster, image: img, desired: 1, gpu: {{ products: [H20] }}, max_price_per_hour: 2 }}
  - name: nights
    pool:
      cluster: bj2-cluster
      image: img
      desired: 1
      gpu: {{ products: [A800, B200] }}
      only_during_discount: true
  - name: ghosts
    select: {{ display_name: "ghost-*", gpu_product: V100 }}
"#
        ),
    );
    let out = binary()
        .args(["validate", "--online", "--config"])
        .arg(&policy)
        .env("TEST_MDC_TOKEN", "demo-token")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    // The H20 costs 10.00/h, 4.80/h at night: a cap of 2.00 can never be met.
    assert!(
        stdout.contains(
            ":10:106: error: policy `cheap`: max_price_per_hour ¥2.00 is below every fitting SKU (the cheapest is ¥4.80/h"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("instance nb-keep-carol (instance-"), "{stdout}");
    assert!(stdout.contains("is selected by `notebooks` and `keepers`; it belongs to `notebooks`"), "{stdout}");
    // Each at the line it comes from.
    for said in [
        ":16:24: warning: policy `nights`: `B200` is not on sale in bj2-cluster (on sale: 4090, A800)",
        ":17:29: warning: policy `nights`: no fitting SKU has a discount window now",
        ":19:53: warning: policy `ghosts`: no SKU of `V100` is on sale",
        ":19:13: warning: policy `ghosts`: its selector matches none of the",
    ] {
        assert!(stdout.contains(said), "no `{said}` in:\n{stdout}");
    }
    let json = binary()
        .args(["validate", "--online", "--output", "json", "--config"])
        .arg(&policy)
        .env("TEST_MDC_TOKEN", "demo-token")
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&json.stdout).unwrap();
    let diagnostics = json["diagnostics"].as_array().unwrap();
    assert!(diagnostics.iter().all(|d| d["line"].as_u64().is_some_and(|l| l > 0)), "{json}");
}

#[tokio::test]
async fn migrate_then_spend_reports_from_the_ledger() {
    use chrono::{Duration, Utc};
    use mdc_autoscaler::ledger::{NewSegment, SqliteStore, Store};
    use mdc_autoscaler::money::Money;

    let db = std::env::temp_dir().join(format!("mdc-spend-{}.db", crate::ledger_contract::uuid_like()));
    let policy =
        write("spend", &format!("settings:\n  ledger: {{ url: \"sqlite://{}\" }}\npolicies: []\n", db.display()));
    let out = binary().args(["migrate", "--config"]).arg(&policy).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ledger migrated (sqlite)");

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    let store = SqliteStore { pool };
    let started = Utc::now() - Duration::hours(2);
    let segment = |name: &str, yuan: i64| NewSegment {
        instance: format!("instance-{name}"),
        display_name: name.into(),
        policy: Some("notebooks".into()),
        sku_id: "66".into(),
        started_at: started,
        price_per_hour: Money::from_yuan(yuan),
    };
    store.write_segments(&[], &[segment("nb-a", 3), segment("nb-b", 1)]).await.unwrap();

    let out =
        binary().args(["spend", "--by", "instance", "--output", "csv", "--config"]).arg(&policy).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "key,spend_yuan,running_hours,saved_yuan");
    // Two hours at 3/h and at 1/h, give or take the seconds the command took.
    assert!(lines[1].starts_with("nb-a,6.0") && lines[2].starts_with("nb-b,2.0"), "{text}");
    let table = binary().args(["spend", "--config"]).arg(&policy).output().unwrap();
    assert!(String::from_utf8_lossy(&table.stdout).contains("notebooks"), "by policy by default");

    // An absolute span that ends before the segments began holds nothing; the month so far holds them
    // (unless the month began within these two hours), in yuan in JSON.
    let spent = |args: &[&str]| {
        let out = binary().args(["spend", "--output", "json", "--config"]).arg(&policy).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
        rows.as_array().unwrap().iter().map(|r| r["spend_yuan"].as_f64().unwrap()).sum::<f64>()
    };
    assert_eq!(spent(&["--since", "2026-01-01", "--until", "2026-01-02 12:00"]), 0.0);
    let month = spent(&["--month"]);
    let month_began = mdc_autoscaler::ledger::service::month_start(chrono_tz::Asia::Shanghai, Utc::now());
    assert!(month > 7.9 || month_began > started, "{month}");
    let out = binary().args(["spend", "--month", "--since", "3d", "--config"]).arg(&policy).output().unwrap();
    assert!(!out.status.success(), "--month with --since is refused");
}

/// `trace export` from a ledger that is not there: the error names it and no file is written.
#[test]
fn trace_export_without_a_ledger_names_it_and_writes_nothing() {
    let dir = std::env::temp_dir().join(format!("mdc-cli-{}-export", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ledger = dir.join("absent.db");
    let policy = write(
        "export",
        "settings:\n  api: { base_url: \"http://127.0.0.1:1\", namespace: n }\n  ledger: { url: { env: MDC_TEST_LEDGER } }\npolicies:\n  - name: nb\n    select: { display_name: \"nb-*\" }\n",
    );
    let trace = dir.join("month.yaml");
    let out = binary()
        .args(["trace", "export", "--since", "2026-11-01", "--until", "2026-12-01", "--config"])
        .arg(&policy)
        .arg("--output")
        .arg(&trace)
        .env("MDC_TEST_LEDGER", format!("sqlite://{}", ledger.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("no ledger at {}", ledger.display())), "{stderr}");
    assert!(!trace.exists() && !ledger.exists(), "nothing written, no database made");
}

/// `spend` where no daemon has run yet: the error names the state
/// directory's ledger, and neither it nor the folder it ran in gets a database.
#[test]
fn spend_without_a_ledger_names_it_and_creates_none() {
    let dir = std::env::temp_dir().join(format!("mdc-cli-{}-spend-none", std::process::id()));
    let (state, cwd) = (dir.join("state"), dir.join("cwd"));
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(&cwd).unwrap();
    let policy = write("spend-none", "policies: []\n");
    let out = binary()
        .current_dir(&cwd)
        .args(["spend", "--config"])
        .arg(&policy)
        .env("STATE_DIRECTORY", &state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("no ledger at {}", state.join("mdc-autoscaler.db").display())), "{stderr}");
    assert_eq!(std::fs::read_dir(&state).unwrap().count() + std::fs::read_dir(&cwd).unwrap().count(), 0);
}

/// `skus` against the fake cloud: every SKU of every region with its prices,
/// discount window and free GPUs, as a table and as JSON in yuan.
#[test]
fn skus_lists_prices_windows_and_free_gpus() {
    let (_server, api) = spawn(&["--manual-clock"], &[]);
    let policy = write(
        "skus",
        &format!(
            "settings:\n  api: {{ base_url: \"{api}\", namespace: demo }}\n  token: {{ env: TEST_MDC_TOKEN }}\npolicies: []\n"
        ),
    );
    let run = |output: &str| {
        let out = binary()
            .args(["skus", "--output", output, "--config"])
            .arg(&policy)
            .env("TEST_MDC_TOKEN", "demo-token")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let rows: Value = serde_json::from_str(&run("json")).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 6, "the default fleet's six SKUs");
    for row in rows {
        let (list, now) =
            (row["list_price_yuan_per_hour"].as_f64().unwrap(), row["price_yuan_per_hour"].as_f64().unwrap());
        assert!(now <= list && now > 0.0, "{row}");
        if row["discount"]["active"] == true {
            assert!(now < list && row["discount"]["minutes_left"].as_i64().unwrap() > 0, "{row}");
        }
        assert!(row["free_gpus"].as_u64().is_some());
    }
    let h20 = rows.iter().find(|r| r["sku"] == "2").unwrap();
    assert_eq!(h20["discount"]["ratio"], 0.48);
    let table = run("table");
    assert!(table.contains("FREE GPUS") && table.contains("¥10.00/h") && table.contains("×0.48"), "{table}");
}

/// `validate --output json`, for editors and CI: every diagnostic with its
/// position and severity, and the counts; the exit status as for the table.
#[test]
fn validate_as_json_gives_positions_severities_and_counts() {
    let broken = write("json-broken", "policies:\n  - name: x\n    select: {}\n    idle: { stop_afer: 1h }\n");
    let out = binary().args(["validate", "--output", "json", "--config"]).arg(&broken).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(answer["errors"].as_u64().unwrap() >= 1 && answer["policies"].is_null(), "{answer}");
    let unknown =
        answer["diagnostics"].as_array().unwrap().iter().find(|d| d["message"].as_str().unwrap().contains("stop_afer"));
    let unknown = unknown.unwrap_or_else(|| panic!("{answer}"));
    assert_eq!((unknown["line"].as_u64(), unknown["column"].as_u64()), (Some(4), Some(13)));
    assert_eq!(unknown["severity"], "error");

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.yaml");
    let out = binary().args(["validate", "--output", "json", "--config", example]).output().unwrap();
    assert!(out.status.success());
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((answer["errors"].as_u64(), answer["policies"].as_u64()), (Some(0), Some(2)), "{answer}");
}

/// Completions and man pages come from the CLI definition: every command is in them.
#[test]
fn completions_and_man_pages_name_every_command() {
    let commands = [
        "run",
        "demo",
        "validate",
        "plan",
        "skus",
        "instances",
        "spend",
        "simulate",
        "advise",
        "trace",
        "confirm",
        "migrate",
        "fake-cloud",
        "schema",
        "completions",
        "man",
    ];
    let bash = binary().args(["completions", "bash"]).output().unwrap();
    assert!(bash.status.success());
    let script = write("completion.bash", &String::from_utf8(bash.stdout).unwrap());
    // Sourced by bash, it registers the function completing `mdc-autoscaler`.
    let registered = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p mdc-autoscaler", script.display()))
        .output()
        .unwrap();
    assert!(registered.status.success(), "{}", String::from_utf8_lossy(&registered.stderr));
    let text = std::fs::read_to_string(&script).unwrap();
    for shell in ["zsh", "fish"] {
        let done = binary().args(["completions", shell]).output().unwrap();
        assert!(done.status.success() && String::from_utf8_lossy(&done.stdout).contains("fake-cloud"), "{shell}");
    }
    let dir = script.parent().unwrap().join("man1");
    let done = binary().arg("man").arg(&dir).output().unwrap();
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let top = std::fs::read_to_string(dir.join("mdc-autoscaler.1")).unwrap();
    assert!(top.starts_with(".ie") && top.contains(".TH mdc-autoscaler 1"), "{top}");
    for command in commands {
        assert!(text.contains(command), "bash completion lacks {command}");
        let page = std::fs::read_to_string(dir.join(format!("mdc-autoscaler-{command}.1")))
            .unwrap_or_else(|e| panic!("no man page for {command}: {e}"));
        assert!(page.contains(".SH OPTIONS"), "{command}");
        assert!(top.contains(&format!("mdc\\-autoscaler\\-{}(1)", command.replace('-', "\\-"))), "{command}");
    }
    assert!(std::fs::read_to_string(dir.join("mdc-autoscaler-plan.1")).unwrap().contains("\\-\\-at"));
}
