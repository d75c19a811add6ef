//! Sending a message through a notification block.

use std::time::Duration;

use headwater_blocks::{MsTeamsWebhook, SlackWebhook, SmtpServer, Webhook};
use headwater_core::block::{redact, secret_values};
use headwater_core::BlockDocument;
use serde_json::{json, Value};

use crate::templates::{render, DEFAULT_BODY, DEFAULT_SLACK_BODY, DEFAULT_SUBJECT};

/// Why an attempt failed, and whether trying again may help.
#[derive(Debug)]
pub(crate) struct Failure {
    pub message: String,
    pub retry: bool,
    /// The receiver asked for this wait (HTTP Retry-After).
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub fn permanent(message: impl Into<String>) -> Failure {
        Failure { message: message.into(), retry: false, retry_after: None }
    }

    pub fn transient(message: impl Into<String>) -> Failure {
        Failure { message: message.into(), retry: true, retry_after: None }
    }
}

/// What to send: templates already chosen by the action.
pub(crate) struct Message<'a> {
    pub subject: Option<&'a str>,
    pub body: Option<&'a str>,
    pub to: &'a [String],
    pub context: &'a Value,
}

/// Sends `message` through `block` (opened: its secrets in clear). No error
/// carries a secret of the block (URLs included).
pub(crate) async fn send(http: &reqwest::Client, block: &BlockDocument, message: &Message<'_>) -> Result<(), Failure> {
    let secrets = headwater_blocks::builtin_types()
        .into_iter()
        .find(|t| t.slug == block.block_type)
        .map(|t| secret_values(&block.data, &t.secret_paths()))
        .unwrap_or_default();
    send_unredacted(http, block, message).await.map_err(|mut f| {
        f.message = redact(&f.message, &secrets);
        f
    })
}

fn typed<T: serde::de::DeserializeOwned>(block: &BlockDocument) -> Result<T, Failure> {
    serde_json::from_value(block.data.clone())
        .map_err(|e| Failure::permanent(format!("block '{}' does not read as a {}: {e}", block.name, block.block_type)))
}

async fn send_unredacted(http: &reqwest::Client, block: &BlockDocument, m: &Message<'_>) -> Result<(), Failure> {
    let subject = render(m.subject.unwrap_or(DEFAULT_SUBJECT), m.context).map_err(Failure::permanent)?;
    match block.block_type.as_str() {
        "slack-webhook" => {
            let b: SlackWebhook = typed(block)?;
            let body = render(m.body.unwrap_or(DEFAULT_SLACK_BODY), m.context).map_err(Failure::permanent)?;
            let text = match m.subject {
                Some(_) => format!("*{subject}*\n{body}"),
                None => body,
            };
            post(http.post(b.url.reveal()).json(&json!({ "text": text }))).await
        }
        "ms-teams-webhook" => {
            let b: MsTeamsWebhook = typed(block)?;
            let body = render(m.body.unwrap_or(DEFAULT_BODY), m.context).map_err(Failure::permanent)?;
            let failed = matches!(m.context["state"]["type"].as_str(), Some("FAILED" | "CRASHED"));
            let card = json!({
                "@type": "MessageCard",
                "@context": "https://schema.org/extensions",
                "summary": subject,
                "title": subject,
                "themeColor": if failed { "D7263D" } else { "2B6CB0" },
                // Teams joins single newlines; paragraphs need two.
                "text": body.replace('\n', "\n\n"),
            });
            post(http.post(b.url.reveal()).json(&card)).await
        }
        "webhook" => {
            let b: Webhook = typed(block)?;
            let method = b.method.as_deref().unwrap_or("POST").to_ascii_uppercase();
            let method = reqwest::Method::from_bytes(method.as_bytes())
                .map_err(|_| Failure::permanent(format!("block '{}': '{method}' is not an HTTP method", block.name)))?;
            let mut req = http.request(method, b.url.reveal());
            for (k, v) in &b.headers {
                req = req.header(k, v);
            }
            if let Some(auth) = &b.authorization {
                req = req.header(reqwest::header::AUTHORIZATION, auth.reveal());
            }
            req = match m.body {
                Some(t) => {
                    let text = render(t, m.context).map_err(Failure::permanent)?;
                    match serde_json::from_str::<Value>(&text) {
                        Ok(v) => req.json(&v),
                        Err(_) => req.header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8").body(text),
                    }
                }
                None => {
                    let mut v = m.context.clone();
                    v["subject"] = json!(subject);
                    v["text"] = json!(render(DEFAULT_BODY, m.context).map_err(Failure::permanent)?);
                    req.json(&v)
                }
            };
            post(req).await
        }
        "smtp-server" => {
            let b: SmtpServer = typed(block)?;
            let body = render(m.body.unwrap_or(DEFAULT_BODY), m.context).map_err(Failure::permanent)?;
            email(&b, &block.name, m.to, &subject, body).await
        }
        other => Err(Failure::permanent(format!(
            "block '{}' is a {other} block, which cannot send messages (use a slack-webhook, ms-teams-webhook, \
             webhook or smtp-server block)",
            block.name
        ))),
    }
}

/// Sends the request; 2xx is delivered, 408/429/5xx and network trouble are
/// worth retrying, other answers are not.
async fn post(req: reqwest::RequestBuilder) -> Result<(), Failure> {
    let resp = req.send().await.map_err(|e| {
        // Never the URL: for webhooks it is the credential.
        let e = e.without_url();
        Failure::transient(format!("cannot reach the receiver: {}", root_cause(&e)))
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = resp.text().await.unwrap_or_default();
    let text: String = text.chars().take(300).collect();
    let message = format!("the receiver answered {status}: {}", text.trim());
    if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
        Err(Failure { message, retry: true, retry_after })
    } else {
        Err(Failure::permanent(message))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

async fn email(b: &SmtpServer, name: &str, to: &[String], subject: &str, body: String) -> Result<(), Failure> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let recipients = if to.is_empty() { &b.to } else { to };
    if recipients.is_empty() {
        return Err(Failure::permanent(format!("no recipients: give the action's `to` or the block '{name}''s `to`")));
    }
    let bad = |what: &str, e: &dyn std::fmt::Display| Failure::permanent(format!("block '{name}': {what}: {e}"));
    let mut msg = Message::builder()
        .from(b.from.parse().map_err(|e| bad(&format!("from '{}'", b.from), &e))?)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    for r in recipients {
        msg = msg.to(r.parse().map_err(|e| bad(&format!("recipient '{r}'"), &e))?);
    }
    let msg = msg.body(body).map_err(|e| bad("the message", &e))?;
    let security = b.security.as_deref().unwrap_or("starttls");
    let builder = match security {
        "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&b.host).map_err(|e| bad("host", &e))?,
        "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(&b.host).map_err(|e| bad("host", &e))?,
        "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&b.host),
        other => return Err(bad("security", &format!("'{other}' is not one of starttls, tls, none"))),
    };
    let port = b.port.unwrap_or(match security {
        "tls" => 465,
        "none" => 25,
        _ => 587,
    });
    let mut builder = builder.port(port).timeout(Some(Duration::from_secs(30)));
    if let (Some(user), Some(password)) = (&b.username, &b.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.reveal().to_string()));
    }
    match builder.build().send(msg).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_permanent() => Err(Failure::permanent(format!("the SMTP server refused the message: {e}"))),
        Err(e) => Err(Failure::transient(format!("cannot send through the SMTP server: {e}"))),
    }
}
