//! Reading an answer's body under a ceiling: whoever answers (the API, a
//! notebook's Jupyter server, Prometheus) cannot make the daemon hold more.

/// Why a body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
    #[error("the answer is over {limit} bytes")]
    TooLarge { limit: usize },
}

/// The body in one buffer, sized by its length when it gives one (a large
/// list page is held once, not as chunks and then a copy), refused as soon
/// as it passes `limit`, declared or not.
pub async fn read_body(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let declared = response.content_length().unwrap_or(0);
    if declared > limit as u64 {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::with_capacity(declared as usize);
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
