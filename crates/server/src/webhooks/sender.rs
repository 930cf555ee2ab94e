//! One signed HTTP attempt at a webhook, shared by the dispatcher and the test ping.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use scimgate_store::{Attempt, WebhookEndpoint, RESPONSE_EXCERPT_BYTES};
use time::OffsetDateTime;

use super::signing::sign;

/// The HTTP client for webhooks: no redirects (a redirect is a misconfiguration to surface,
/// and would replay the signature elsewhere), and a user agent receivers can allow-list.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("scimgate-webhooks/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}

/// The `webhook-signature` header: one signature per valid secret, space-separated, so a
/// receiver mid-rotation accepts either.
fn signatures(endpoint: &WebhookEndpoint, id: &str, timestamp: i64, body: &[u8]) -> String {
    std::iter::once(&endpoint.secret)
        .chain(endpoint.previous_secret.as_ref())
        .map(|secret| sign(secret, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Posts `body` to the endpoint, signed as message `id`, and reports how it went. Any 2xx is
/// a success.
pub async fn send(
    client: &reqwest::Client,
    endpoint: &WebhookEndpoint,
    id: &str,
    body: Vec<u8>,
    timeout: Duration,
    delivery_id: i64,
) -> Attempt {
    let at = OffsetDateTime::now_utc();
    let timestamp = at.unix_timestamp();
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let signed = [
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        (
            "webhook-signature",
            signatures(endpoint, id, timestamp, &body),
        ),
    ];
    for (name, value) in signed {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    let started = Instant::now();
    let result = client
        .post(&endpoint.url)
        .headers(headers)
        .body(body)
        .timeout(timeout)
        .send()
        .await;
    let mut attempt = Attempt {
        delivery_id,
        at,
        success: false,
        status_code: None,
        latency_ms: 0,
        response: None,
        error: None,
    };
    match result {
        Ok(mut response) => {
            let status = response.status();
            attempt.status_code = Some(status.as_u16());
            attempt.success = status.is_success();
            let mut excerpt = Vec::new();
            while excerpt.len() < RESPONSE_EXCERPT_BYTES {
                match response.chunk().await {
                    Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                    Ok(None) => break,
                    Err(e) => {
                        attempt.error = Some(e.without_url().to_string());
                        break;
                    }
                }
            }
            excerpt.truncate(RESPONSE_EXCERPT_BYTES);
            attempt.response = Some(String::from_utf8_lossy(&excerpt).into_owned());
            if !attempt.success && attempt.error.is_none() {
                attempt.error = Some(format!("the endpoint answered {status}"));
            }
        }
        Err(e) => {
            let what = if e.is_timeout() {
                format!("no answer within {} ms", timeout.as_millis())
            } else if e.is_connect() {
                format!("cannot connect: {}", e.without_url())
            } else {
                e.without_url().to_string()
            };
            attempt.error = Some(what);
        }
    }
    attempt.latency_ms = started.elapsed().as_millis() as u64;
    attempt
}
