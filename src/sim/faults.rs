//! Faults the fake server injects on the wire: error answers at a rate,
//! latency, broken JSON, a failing list page, and one-off scripted faults.

use std::collections::VecDeque;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::PlatformFaults;
use crate::cloud::Endpoint;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WireFaults {
    /// Share of API calls answered with one of `error_statuses`.
    pub error_rate: f64,
    pub error_statuses: Vec<u16>,
    /// Sent as `Retry-After` with injected 429s.
    pub retry_after_seconds: Option<u64>,
    /// Added before every API answer.
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// Share of answers whose JSON is replaced by something that is not JSON.
    pub malformed_rate: f64,
    /// Share of answers cut off half-way.
    pub truncated_rate: f64,
    /// This page of every instance list answers 500.
    pub fail_list_page: Option<u32>,
}

impl Default for WireFaults {
    fn default() -> Self {
        WireFaults {
            error_rate: 0.0,
            error_statuses: vec![429, 500, 503],
            retry_after_seconds: Some(1),
            latency: Duration::ZERO,
            malformed_rate: 0.0,
            truncated_rate: 0.0,
            fail_list_page: None,
        }
    }
}

/// Every fault setting, as a fault file and the admin endpoint spell them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    pub wire: WireFaults,
    pub platform: PlatformFaults,
}

/// A fault for the next matching call(s), whatever the rates say.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScriptedFault {
    /// `None` matches any API call.
    #[serde(default)]
    pub endpoint: Option<Endpoint>,
    #[serde(flatten)]
    pub fault: Fault,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    Status { status: u16, retry_after_seconds: Option<u64> },
    Delay { millis: u64 },
    Malformed,
    Truncated,
}

/// What to do to one answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Injection {
    pub delay: Duration,
    pub fault: Option<Fault>,
}

pub struct Injector {
    pub wire: WireFaults,
    script: VecDeque<ScriptedFault>,
    rng: StdRng,
}

impl Injector {
    pub fn new(wire: WireFaults, seed: u64) -> Self {
        Injector { wire, script: VecDeque::new(), rng: StdRng::seed_from_u64(seed ^ 0x5eed_fa17) }
    }

    pub fn push(&mut self, fault: ScriptedFault) {
        if fault.times > 0 {
            self.script.push_back(fault);
        }
    }

    pub fn clear_script(&mut self) {
        self.script.clear();
    }

    pub fn script(&self) -> impl Iterator<Item = &ScriptedFault> {
        self.script.iter()
    }

    /// Decides the fate of one call to `endpoint` (`page` for lists).
    pub fn decide(&mut self, endpoint: Endpoint, page: Option<u32>) -> Injection {
        let mut delay = self.wire.latency;
        if let Some(at) = self.script.iter().position(|f| f.endpoint.is_none_or(|e| e == endpoint)) {
            let scripted = &mut self.script[at];
            let fault = scripted.fault.clone();
            scripted.times -= 1;
            if scripted.times == 0 {
                self.script.remove(at);
            }
            return match fault {
                Fault::Delay { millis } => Injection { delay: delay + Duration::from_millis(millis), fault: None },
                fault => Injection { delay, fault: Some(fault) },
            };
        }
        if endpoint == Endpoint::ListInstances && page.is_some() && page == self.wire.fail_list_page {
            return Injection { delay, fault: Some(Fault::Status { status: 500, retry_after_seconds: None }) };
        }
        let roll = |rng: &mut StdRng, rate: f64| rate > 0.0 && rng.random_bool(rate.clamp(0.0, 1.0));
        let fault = if roll(&mut self.rng, self.wire.error_rate) && !self.wire.error_statuses.is_empty() {
            let status = self.wire.error_statuses[self.rng.random_range(0..self.wire.error_statuses.len())];
            let retry_after_seconds = (status == 429).then_some(self.wire.retry_after_seconds).flatten();
            Some(Fault::Status { status, retry_after_seconds })
        } else if roll(&mut self.rng, self.wire.malformed_rate) {
            Some(Fault::Malformed)
        } else if roll(&mut self.rng, self.wire.truncated_rate) {
            Some(Fault::Truncated)
        } else {
            None
        };
        if fault.is_none() && !delay.is_zero() {
            // A little jitter, so latency is not a metronome.
            delay += Duration::from_millis(self.rng.random_range(0..=delay.as_millis().min(1000) as u64 / 10));
        }
        Injection { delay, fault }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_faults_come_first_and_run_out() {
        let mut injector = Injector::new(WireFaults::default(), 1);
        injector.push(ScriptedFault {
            endpoint: Some(Endpoint::PowerOn),
            fault: Fault::Status { status: 503, retry_after_seconds: None },
            times: 2,
        });
        assert_eq!(injector.decide(Endpoint::ListRegions, None).fault, None);
        for _ in 0..2 {
            assert!(matches!(injector.decide(Endpoint::PowerOn, None).fault, Some(Fault::Status { status: 503, .. })));
        }
        assert_eq!(injector.decide(Endpoint::PowerOn, None).fault, None);
    }

    #[test]
    fn rates_are_roughly_honoured_and_reproducible() {
        let wire = WireFaults { error_rate: 0.2, ..WireFaults::default() };
        let count = |seed| {
            let mut injector = Injector::new(wire.clone(), seed);
            (0..10_000).filter(|_| injector.decide(Endpoint::GetInstance, None).fault.is_some()).count()
        };
        let errors = count(7);
        assert!((1_700..2_300).contains(&errors), "{errors}");
        assert_eq!(errors, count(7));
    }

    #[test]
    fn scripted_faults_read_from_json() {
        let fault: ScriptedFault = serde_json::from_str(
            r#"{"endpoint": "list_instances", "fault": "status", "status": 429, "retry_after_seconds": 2}"#,
        )
        .unwrap();
        assert_eq!(fault.times, 1);
        assert_eq!(fault.fault, Fault::Status { status: 429, retry_after_seconds: Some(2) });
    }
}
