//! The Jupyter signal: jupyter_server's `/api/status` and `/api/kernels`,
//! with the token from the instance record. A busy kernel is work even with
//! nobody connected; polling these endpoints does not count as activity.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{BODY_MAX, Look, SignalError};
use crate::cloud::JupyterEndpoint;
use crate::cloud::body::read_body;
use crate::plan::Reading;

#[derive(Deserialize)]
struct Status {
    last_activity: DateTime<Utc>,
    started: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct Kernel {
    execution_state: String,
}

/// Reads one Jupyter server; `started` is when the server started (the
/// instance has been running since then). Never fails: what cannot be read is `Unreadable`.
pub async fn look(http: &reqwest::Client, endpoint: &JupyterEndpoint, timeout: Duration) -> Look {
    match read(http, endpoint, timeout).await {
        Ok(look) => look,
        Err(why) => Look::unreadable(why.to_string()),
    }
}

async fn read(http: &reqwest::Client, endpoint: &JupyterEndpoint, timeout: Duration) -> Result<Look, SignalError> {
    let get = |path: &str| {
        http.get(format!("{}/api/{path}", endpoint.base_url))
            .header(reqwest::header::AUTHORIZATION, format!("token {}", endpoint.token.expose()))
            .timeout(timeout)
            .send()
    };
    let (status, kernels) = tokio::join!(get("status"), get("kernels"));
    let status: Status = answer(status).await?;
    let kernels: Vec<Kernel> = answer(kernels).await?;
    let reading = if kernels.iter().any(|k| k.execution_state == "busy") {
        Reading::Active
    } else {
        Reading::IdleSince(status.last_activity)
    };
    Ok(Look { reading, started: status.started })
}

async fn answer<T: serde::de::DeserializeOwned>(
    response: reqwest::Result<reqwest::Response>,
) -> Result<T, SignalError> {
    let response = response.map_err(|e| SignalError::of_transport(&e))?;
    match response.status().as_u16() {
        200 => {
            let body = read_body(response, BODY_MAX).await.map_err(|e| SignalError::of_body(&e, 200))?;
            serde_json::from_slice(&body).map_err(|_| SignalError::Malformed(200))
        }
        403 => Err(SignalError::TokenRefused),
        status => Err(SignalError::Status(status)),
    }
}
