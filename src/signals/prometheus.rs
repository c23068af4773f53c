//! The Prometheus signal: a PromQL query per instance (GPU utilisation from
//! DCGM exporter, say), active above a threshold.
//!
//! One instant query answers when the instance was last active: the latest
//! time within the idle window at which the query was above the threshold,
//! or 0 when it had data but never was, or nothing when it had no data
//! (unreadable, so active). That gives an exact idle-since from one call.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use super::{Look, SignalError};
use crate::cloud::body::read_body;
use crate::plan::Reading;

/// One instance's query, ready to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    url: String,
    promql: String,
    /// How far back the query looks: an instance idle over all of it is idle long enough.
    window: Duration,
}

impl Query {
    /// `query` with `{name}` and `{display_name}` replaced by the instance's names
    /// (escaped for a PromQL string), looking back `stop_after` at a
    /// resolution of one cycle.
    pub fn new(
        url: &str,
        query: &str,
        threshold: f64,
        name: &str,
        display_name: &str,
        stop_after: Duration,
        interval: Duration,
    ) -> Self {
        let query = query.replace("{name}", &escape(name)).replace("{display_name}", &escape(display_name));
        let range = format!("[{}s:{}s]", stop_after.num_seconds().max(1), interval.num_seconds().max(1));
        let promql = format!(
            "max(max_over_time(timestamp(({query}) > {threshold}){range})) or max(0 * max_over_time(({query}){range}))"
        );
        Query { url: format!("{}/api/v1/query", url.trim_end_matches('/')), promql, window: stop_after }
    }

    pub fn promql(&self) -> &str {
        &self.promql
    }

    /// Sends the query. Never fails: what cannot be read is `Unreadable`.
    pub async fn look(&self, http: &reqwest::Client, now: DateTime<Utc>, timeout: StdDuration) -> Look {
        match self.read(http, now, timeout).await {
            Ok(reading) => Look { reading, started: None },
            Err(why) => Look::unreadable(format!("prometheus: {why}")),
        }
    }

    async fn read(
        &self,
        http: &reqwest::Client,
        now: DateTime<Utc>,
        timeout: StdDuration,
    ) -> Result<Reading, SignalError> {
        let time = format!("{:.3}", now.timestamp_millis() as f64 / 1000.0);
        let response = http
            .get(&self.url)
            .query(&[("query", self.promql.as_str()), ("time", time.as_str())])
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| SignalError::of_transport(&e))?;
        let status = response.status().as_u16();
        let body = read_body(response, super::BODY_MAX).await.map_err(|e| SignalError::of_body(&e, status))?;
        let answer: Answer = serde_json::from_slice(&body).map_err(|_| SignalError::Malformed(status))?;
        if answer.status != "success" {
            return Err(SignalError::Refused { status, message: answer.error.unwrap_or_default() });
        }
        let data = answer.data.ok_or(SignalError::NoData("no data in the answer"))?;
        if data.result_type != "vector" {
            return Err(SignalError::NotAVector(data.result_type));
        }
        let value = data
            .result
            .iter()
            .filter_map(|sample| sample.value.1.parse::<f64>().ok())
            .filter(|v| v.is_finite())
            .reduce(f64::max)
            .ok_or(SignalError::NoData("no data for this instance"))?;
        if value <= 0.0 {
            return Ok(Reading::IdleSince(now - self.window));
        }
        let last_active = DateTime::from_timestamp_millis((value * 1000.0) as i64)
            .ok_or(SignalError::NoData("a timestamp out of range"))?;
        Ok(Reading::IdleSince(last_active.min(now)))
    }
}

/// For a double-quoted PromQL string.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    data: Option<Data>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<Sample>,
}

#[derive(Deserialize)]
struct Sample {
    /// `[unix seconds, "value"]`.
    value: (f64, String),
}
