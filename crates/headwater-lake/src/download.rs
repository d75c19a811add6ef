//! HTTP(S) downloads that survive a flaky network: retried with backoff,
//! and resumed where they stopped (a `Range` request) instead of starting
//! over. The file appears under its name only once complete.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE};
use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;

use crate::LakeError;

/// How a download went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Downloaded {
    pub bytes: u64,
    /// Attempts that resumed a partial file.
    pub resumed: u32,
}

/// How hard to try.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    pub attempts: u32,
    pub first_delay: Duration,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions { attempts: 6, first_delay: Duration::from_millis(500) }
    }
}

/// Downloads `url` to `dest`. Bytes go to `dest.part` first; after a failure
/// the next attempt asks for the rest only. Progress: a bar on a terminal,
/// log lines (at most every few seconds) otherwise.
///
/// A partial file left by an earlier process is resumed only if the file on
/// the server is still the one it was cut from: its validator (ETag or
/// Last-Modified, kept in `dest.part.validator`) goes in an `If-Range`
/// header, and a server whose file changed answers with the whole new file.
/// A partial file without a validator is started over.
pub async fn download(url: &str, dest: &Path, opts: &DownloadOptions) -> Result<Downloaded, LakeError> {
    // HTTPS through rustls needs its process-wide provider (a second install changes nothing).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| LakeError::Download { url: url.into(), reason: e.to_string() })?;
    if let Some(dir) = dest.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let part = dest.with_extension(format!("{}.part", dest.extension().and_then(|e| e.to_str()).unwrap_or("")));
    let validator_file =
        dest.with_extension(format!("{}.part.validator", dest.extension().and_then(|e| e.to_str()).unwrap_or("")));
    let mut ours = false;
    let mut resumed = 0;
    let mut delay = opts.first_delay;
    let mut last_error = String::new();
    for attempt in 1..=opts.attempts.max(1) {
        let mut have = tokio::fs::metadata(&part).await.map(|m| m.len()).unwrap_or(0);
        let validator = tokio::fs::read_to_string(&validator_file).await.ok().map(|v| v.trim().to_string());
        if have > 0 && validator.is_none() && !ours {
            // Cut from an unknown version of the file: not worth the risk.
            tokio::fs::remove_file(&part).await?;
            have = 0;
        }
        let got = fetch(&client, url, &part, have, validator.as_deref(), &validator_file).await;
        ours = true;
        match got {
            Ok(Fetch::Done(bytes)) => {
                tokio::fs::rename(&part, dest).await?;
                let _ = tokio::fs::remove_file(&validator_file).await;
                return Ok(Downloaded { bytes, resumed });
            }
            Ok(Fetch::Fatal(reason)) => return Err(LakeError::Download { url: url.into(), reason }),
            Err(e) => {
                last_error = e;
                if have > 0 || tokio::fs::metadata(&part).await.map(|m| m.len()).unwrap_or(0) > 0 {
                    resumed += 1;
                }
                if attempt < opts.attempts {
                    tracing::warn!(
                        "download of {url} interrupted ({last_error}); attempt {} in {delay:?}",
                        attempt + 1
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
    Err(LakeError::Download {
        url: url.into(),
        reason: format!("gave up after {} attempts: {last_error}", opts.attempts),
    })
}

enum Fetch {
    Done(u64),
    /// Not worth retrying (404, 403, …).
    Fatal(String),
}

async fn fetch(
    client: &reqwest::Client,
    url: &str,
    part: &Path,
    have: u64,
    validator: Option<&str>,
    validator_file: &Path,
) -> Result<Fetch, String> {
    let mut req = client.get(url);
    if have > 0 {
        req = req.header(RANGE, format!("bytes={have}-"));
        if let Some(v) = validator {
            req = req.header(IF_RANGE, v);
        }
    }
    let mut resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let (mut file, mut got, total) = match status {
        StatusCode::PARTIAL_CONTENT => {
            let total = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit('/').next())
                .and_then(|t| t.parse::<u64>().ok());
            let f = tokio::fs::OpenOptions::new().append(true).open(part).await.map_err(|e| e.to_string())?;
            (f, have, total)
        }
        StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => {
            // The partial file is already whole.
            return Ok(Fetch::Done(have));
        }
        s if s.is_success() => {
            // The server ignored the range, the file changed (If-Range), or
            // there was no range: start over, remembering which version this is.
            let total = resp.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
            let strong_etag = resp.headers().get(ETAG).and_then(|v| v.to_str().ok()).filter(|v| !v.starts_with("W/"));
            let seen = strong_etag.or_else(|| resp.headers().get(LAST_MODIFIED).and_then(|v| v.to_str().ok()));
            match seen {
                Some(v) => tokio::fs::write(validator_file, v).await.map_err(|e| e.to_string())?,
                None => {
                    let _ = tokio::fs::remove_file(validator_file).await;
                }
            }
            let f = tokio::fs::File::create(part).await.map_err(|e| e.to_string())?;
            (f, 0, total)
        }
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            return Err(format!("the server answered {s}"))
        }
        s => return Ok(Fetch::Fatal(format!("the server answered {s}"))),
    };
    let mut progress = Progress::new(url, total);
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        file.write_all(&chunk).await.map_err(|e| e.to_string())?;
        got += chunk.len() as u64;
        progress.update(got);
    }
    file.flush().await.map_err(|e| e.to_string())?;
    file.sync_all().await.map_err(|e| e.to_string())?;
    if let Some(t) = total {
        if got < t {
            return Err(format!("the connection closed after {got} of {t} bytes"));
        }
    }
    progress.done(got);
    Ok(Fetch::Done(got))
}

struct Progress {
    url: String,
    total: Option<u64>,
    tty: bool,
    last: Instant,
}

impl Progress {
    fn new(url: &str, total: Option<u64>) -> Progress {
        Progress { url: url.to_string(), total, tty: std::io::stderr().is_terminal(), last: Instant::now() }
    }

    fn update(&mut self, got: u64) {
        let every = if self.tty { Duration::from_millis(100) } else { Duration::from_secs(5) };
        if self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let shown = match self.total {
            Some(t) if t > 0 => format!("{:.1} of {:.1} MB ({:.0}%)", mb(got), mb(t), got as f64 * 100.0 / t as f64),
            _ => format!("{:.1} MB", mb(got)),
        };
        if self.tty {
            eprint!("\r  downloading {shown}   ");
        } else {
            tracing::info!("downloading {}: {shown}", self.url);
        }
    }

    fn done(&self, got: u64) {
        if self.tty {
            eprint!("\r{:60}\r", "");
        }
        tracing::info!("downloaded {} ({:.1} MB)", self.url, mb(got));
    }
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}
