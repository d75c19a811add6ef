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

/// How a download went, and which version of the file it got: what a
/// catalog records to notice later that the file on the server changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Downloaded {
    pub bytes: u64,
    /// Attempts that resumed a partial file.
    pub resumed: u32,
    /// The server's `ETag` and `Last-Modified` for the file, if it sent them.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The file was already here and the server said it has not changed
    /// since (304): nothing was downloaded.
    pub unchanged: bool,
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
///
/// A whole file already at `dest` is revalidated instead of fetched again:
/// its validators (kept in `dest.source`) go in `If-None-Match` /
/// `If-Modified-Since`, and a server that answers 304 Not Modified costs no
/// download. A changed file is downloaded again.
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
    let source_file =
        dest.with_extension(format!("{}.source", dest.extension().and_then(|e| e.to_str()).unwrap_or("")));
    if let Some(got) = revalidate(&client, url, dest, &source_file).await {
        return Ok(got);
    }
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
            Ok(Fetch::Done(bytes, validators)) => {
                // The old file's validators go first: killed between the
                // rename and the write, the next run downloads again.
                let _ = tokio::fs::remove_file(&source_file).await;
                tokio::fs::rename(&part, dest).await?;
                let _ = tokio::fs::remove_file(&validator_file).await;
                let _ = tokio::fs::write(&source_file, validators.to_text()).await;
                let Validators { etag, last_modified } = validators;
                return Ok(Downloaded { bytes, resumed, etag, last_modified, unchanged: false });
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

/// What the server said of the file's version.
#[derive(Default)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

impl Validators {
    fn of(headers: &reqwest::header::HeaderMap) -> Validators {
        let get = |h| headers.get(h).and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok()).map(String::from);
        Validators { etag: get(ETAG), last_modified: get(LAST_MODIFIED) }
    }

    /// Two lines, `etag:` and `last-modified:` (either may be empty).
    fn to_text(&self) -> String {
        format!(
            "etag:{}\nlast-modified:{}\n",
            self.etag.as_deref().unwrap_or(""),
            self.last_modified.as_deref().unwrap_or("")
        )
    }

    fn from_text(text: &str) -> Validators {
        let field = |name: &str| {
            text.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).filter(|v| !v.is_empty()).map(String::from)
        };
        Validators { etag: field("etag:"), last_modified: field("last-modified:") }
    }
}

/// Asks whether the whole file at `dest` is still the server's; Some when
/// it is (304), None when it must be downloaded (changed, no file, no
/// validators, or the server could not say).
async fn revalidate(client: &reqwest::Client, url: &str, dest: &Path, source_file: &Path) -> Option<Downloaded> {
    use reqwest::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH};
    let bytes = tokio::fs::metadata(dest).await.ok()?.len();
    let known = Validators::from_text(&tokio::fs::read_to_string(source_file).await.ok()?);
    let mut req = client.get(url);
    match (&known.etag, &known.last_modified) {
        (Some(etag), _) => req = req.header(IF_NONE_MATCH, etag),
        (None, Some(modified)) => req = req.header(IF_MODIFIED_SINCE, modified),
        (None, None) => return None,
    }
    let resp = req.send().await.ok()?;
    if resp.status() != StatusCode::NOT_MODIFIED {
        return None;
    }
    tracing::info!("{url} has not changed since it was downloaded: keeping {}", dest.display());
    let now = Validators::of(resp.headers());
    Some(Downloaded {
        bytes,
        resumed: 0,
        etag: now.etag.or(known.etag),
        last_modified: now.last_modified.or(known.last_modified),
        unchanged: true,
    })
}

enum Fetch {
    Done(u64, Validators),
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
            return Ok(Fetch::Done(have, Validators::of(resp.headers())));
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
    let validators = Validators::of(resp.headers());
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
    Ok(Fetch::Done(got, validators))
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
