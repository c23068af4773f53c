//! Schedules across clock changes: in Europe/Berlin an edge inside the
//! spring-forward gap fires once, right after the gap; an edge inside the
//! repeated autumn hour fires once; no day is skipped or doubled. Asia/Shanghai
//! is the default zone.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Europe::Berlin;
use mdc_autoscaler::cloud::{InstanceStatus, StatusMap, wire};
use mdc_autoscaler::config::load::load_str;
use mdc_autoscaler::config::policy::{Config, Edge};
use mdc_autoscaler::plan::{self, ActionKind, Observed, ObservedInstance};

fn config(schedule: &str) -> Config {
    let text = format!(
        "policies:\n  - name: office\n    select: {{ display_name: \"office-*\" }}\n    schedule: {schedule}\n"
    );
    let (config, report) = load_str("dst", &text);
    config.unwrap_or_else(|| panic!("{report}"))
}

/// Every distinct edge seen by sampling `latest_edge` each 5 minutes.
fn edges(config: &Config, from: DateTime<Utc>, days: i64) -> BTreeSet<(String, DateTime<Utc>)> {
    let schedule = config.policies[0].schedule.as_ref().unwrap();
    let mut seen = BTreeSet::new();
    let mut now = from;
    while now < from + Duration::days(days) {
        if let Some((edge, at)) = schedule.latest_edge(now) {
            assert!(at <= now, "an edge in the future");
            seen.insert((format!("{edge:?}"), at));
        }
        let next = schedule.next_edge(now).expect("the schedule fires again");
        assert!(next > now);
        now += Duration::minutes(5);
    }
    seen
}

fn berlin(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Berlin.with_ymd_and_hms(y, m, d, h, min, 0).earliest().unwrap().to_utc()
}

#[test]
fn spring_forward_neither_skips_nor_doubles() {
    // 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    let config = config(r#"{ timezone: Europe/Berlin, start: "0 8 * * *", stop: "30 2 * * *" }"#);
    let stops: Vec<DateTime<Utc>> = edges(&config, berlin(2026, 3, 27, 12, 0), 4)
        .into_iter()
        .filter(|(e, _)| e == "Stop")
        .map(|(_, t)| t)
        .collect();
    assert_eq!(
        stops,
        [
            berlin(2026, 3, 28, 2, 30),
            Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap(), // 03:00 CEST, just after the gap
            berlin(2026, 3, 30, 2, 30),
            berlin(2026, 3, 31, 2, 30),
        ]
    );
}

#[test]
fn fall_back_fires_once() {
    // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    let config = config(r#"{ timezone: Europe/Berlin, start: "0 8 * * *", stop: "30 2 * * *" }"#);
    let all = edges(&config, berlin(2026, 10, 23, 12, 0), 4);
    let stops: Vec<_> = all.iter().filter(|(e, _)| e == "Stop").collect();
    let starts: Vec<_> = all.iter().filter(|(e, _)| e == "Start").collect();
    // Sampling from noon on the 23rd: starts on the 23rd..27th, stops on the 24th..27th.
    assert_eq!(stops.len(), 4, "{stops:?}");
    assert_eq!(starts.len(), 5, "{starts:?}");
    let on_the_day: Vec<_> =
        stops.iter().filter(|(_, t)| t.with_timezone(&Berlin).date_naive().to_string() == "2026-10-25").collect();
    assert_eq!(on_the_day.len(), 1, "{on_the_day:?}");
}

#[test]
fn shanghai_is_the_default_zone() {
    let config = config(r#"{ start: "0 9 * * *" }"#);
    let schedule = config.policies[0].schedule.as_ref().unwrap();
    assert_eq!(schedule.timezone, chrono_tz::Asia::Shanghai);
    let now = Utc.with_ymd_and_hms(2026, 11, 27, 2, 0, 0).unwrap();
    assert_eq!(schedule.latest_edge(now), Some((Edge::Start, Utc.with_ymd_and_hms(2026, 11, 27, 1, 0, 0).unwrap())));
}

/// The planner, run every 5 minutes across a week with each clock change,
/// starts and stops the instance exactly once per edge.
#[test]
fn the_planner_acts_once_per_edge_across_clock_changes() {
    let config = config(r#"{ timezone: Europe/Berlin, start: "30 2 * * *", stop: "0 18 * * *" }"#);
    for (from, label) in [(berlin(2026, 3, 25, 12, 0), "spring"), (berlin(2026, 10, 21, 12, 0), "autumn")] {
        let raw = wire::Instance {
            name: "instance-0000000a".into(),
            display_name: "office-1".into(),
            region: "host-cluster".into(),
            status: "Shutdown".into(),
            ..Default::default()
        };
        let mut observed = Observed {
            instances: vec![ObservedInstance::new(raw.into_domain(&StatusMap::default()).unwrap())],
            spend: Some(Default::default()),
            ..Observed::default()
        };
        let (mut starts, mut stops) = (0, 0);
        let mut now = from;
        while now < from + Duration::days(7) {
            let plan = plan::plan(&observed, &config, now);
            for mark in &plan.schedule_marks {
                observed.schedule_marks.insert(mark.instance.clone(), mark.edge);
            }
            for action in plan.actions {
                let instance = &mut observed.instances[0].instance;
                match action.kind {
                    ActionKind::PowerOn => {
                        starts += 1;
                        instance.status = InstanceStatus::Running;
                    }
                    ActionKind::PowerOff(_) => {
                        stops += 1;
                        instance.status = InstanceStatus::Stopped;
                    }
                    other => panic!("unexpected {other:?}"),
                }
                observed.schedule_marks.insert(instance.name.clone(), action.schedule_edge.unwrap());
            }
            now += Duration::minutes(5);
        }
        // From noon on day 1 to noon on day 8: eight 02:30 starts (the first a catch-up), seven 18:00 stops.
        assert_eq!((starts, stops), (8, 7), "{label}: one start and one stop a day");
    }
}
