//! A plan as people read it: one line per action with its money and reason,
//! then the notable non-actions.

use std::fmt::Write;

use chrono_tz::Tz;

use super::observed::yuan;
use super::{ActionKind, Plan};

pub fn table(plan: &Plan, tz: Tz) -> String {
    let mut out = String::new();
    let local = |t: chrono::DateTime<chrono::Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string();
    let _ = writeln!(out, "Plan at {}", local(plan.at));
    if plan.actions.is_empty() {
        let _ = writeln!(out, "\nNothing to do.");
    } else {
        let rows: Vec<Vec<String>> = plan
            .actions
            .iter()
            .map(|a| {
                let what = match &a.kind {
                    ActionKind::Create { request, .. } => format!("create on SKU {}", request.sku_id),
                    ActionKind::PowerOff(off) if off.snapshot.is_some() => "power_off + snapshot".to_owned(),
                    kind => kind.label().to_owned(),
                };
                let saving = if a.saving_per_hour.micros() < 0 {
                    format!("costs {}", yuan(super::Money::ZERO - a.saving_per_hour))
                } else {
                    format!("saves {}", yuan(a.saving_per_hour))
                };
                vec![what, a.instance.display_name.clone(), a.policy.clone(), format!("{saving}/h"), a.reason.clone()]
            })
            .collect();
        let headers = ["ACTION", "INSTANCE", "POLICY", "MONEY", "WHY"];
        let _ = writeln!(out);
        out += &crate::text::table(&headers, &rows);
        let saved: super::Money = plan.actions.iter().map(|a| a.saving_per_hour).sum();
        let _ = writeln!(out, "\nNet effect: {} per hour.", signed(saved));
    }
    if !plan.notes.is_empty() {
        let _ = writeln!(out, "\nNot done, and why:");
        for n in &plan.notes {
            let who = match (&n.instance, &n.policy) {
                (Some(i), Some(p)) => format!("{i} ({p})"),
                (None, Some(p)) => p.clone(),
                (Some(i), None) => i.clone(),
                (None, None) => "all policies".into(),
            };
            let _ = writeln!(out, "  {who}: {}", n.text);
        }
    }
    if !plan.learned.is_empty() {
        let _ = writeln!(out, "\nLearned:");
        for l in &plan.learned {
            let when = match (l.stops_at, l.prewarm_at, l.prewarm_until) {
                (Some(stops), _, _) => format!("idle; stops at {}", local(stops)),
                (None, Some(at), Some(until)) => format!("next pre-warm {} to {}", local(at), local(until)),
                _ => String::new(),
            };
            let _ = writeln!(out, "  {} ({}): {when}; {}", l.instance, l.policy, l.text);
        }
    }
    if !plan.schedule_marks.is_empty() {
        let _ = writeln!(out, "\n{} schedule edges already in force, to be recorded.", plan.schedule_marks.len());
    }
    if let Some(next) = plan.next_check {
        let _ = writeln!(out, "\nNext decision due by {}.", local(next));
    }
    out
}

fn signed(m: super::Money) -> String {
    if m.micros() < 0 { format!("costs {}", yuan(super::Money::ZERO - m)) } else { format!("saves {}", yuan(m)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Lesson;
    use chrono::TimeZone;

    #[test]
    fn what_was_learned_is_listed_with_its_moment() {
        let at = chrono::Utc.with_ymd_and_hms(2026, 11, 27, 4, 0, 0).unwrap();
        type At = Option<chrono::DateTime<chrono::Utc>>;
        let learning =
            |stops_at: At, prewarm_at: At, prewarm_until: At, text: super::super::Lesson| super::super::Learning {
                policy: "notebooks".into(),
                instance: "nb-1".into(),
                keep_alive_seconds: stops_at.map(|_| 4200),
                stops_at,
                prewarm_at,
                prewarm_until,
                text,
            };
        let window = crate::plan::prewarm::Window {
            start: 710,
            end: 740,
            days: 15,
            arrived: 14,
            saved: super::super::Money::from_yuan(28),
            cost: super::super::Money::from_yuan(9),
        };
        let plan = Plan {
            at,
            actions: vec![],
            notes: vec![],
            schedule_marks: vec![],
            next_check: None,
            watch: vec![],
            warnings: vec![],
            learned: vec![
                learning(
                    Some(at + chrono::Duration::minutes(70)),
                    None,
                    None,
                    Lesson::UntilLearned(chrono::Duration::minutes(70)),
                ),
                learning(
                    None,
                    Some(at),
                    Some(at + chrono::Duration::minutes(20)),
                    Lesson::NextPrewarm(Box::new(window)),
                ),
            ],
        };
        let text = table(&plan, chrono_tz::Asia::Shanghai);
        assert!(
            text.contains("Learned:\n  nb-1 (notebooks): idle; stops at 2026-11-27 13:10 CST; too few idle gaps like this one yet: until_learned 1h 10m"),
            "{text}"
        );
        assert!(text.contains("next pre-warm 2026-11-27 12:00 CST to 2026-11-27 12:20 CST; someone arrived between 11:50 and 12:20 on 14 of the last 15"), "{text}");
    }
}
