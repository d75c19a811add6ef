use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use headwater_lake::download::{download, DownloadOptions};
use headwater_lake::serve::FileServer;

#[tokio::test]
async fn files_are_served_and_downloaded_whole() {
    let web = tempfile::tempdir().unwrap();
    std::fs::create_dir(web.path().join("yellow")).unwrap();
    let body: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(web.path().join("yellow/yellow_tripdata_2021-01.csv.gz"), &body).unwrap();
    let server = FileServer::start(web.path(), 0).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("y.csv.gz");
    let url = format!("{}/yellow/yellow_tripdata_2021-01.csv.gz", server.url());
    let got = download(&url, &dest, &DownloadOptions::default()).await.unwrap();
    assert_eq!(got.bytes, body.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    // Which version of the file it was: what the catalog records as its source.
    assert!(got.last_modified.as_deref().is_some_and(|m| m.ends_with("GMT")), "{got:?}");
    let missing =
        download(&format!("{}/yellow/nope.csv.gz", server.url()), &out.path().join("n"), &DownloadOptions::default())
            .await
            .unwrap_err();
    assert!(missing.to_string().contains("404"), "{missing}");
    assert!(!out.path().join("n").exists());
}

/// A file already downloaded is asked about, not fetched again, until the
/// server's copy changes.
#[tokio::test]
async fn a_file_already_here_is_revalidated_and_fetched_again_only_once_changed() {
    let web = tempfile::tempdir().unwrap();
    let file = web.path().join("green_tripdata_2020-01.csv.gz");
    std::fs::write(&file, b"first version").unwrap();
    let server = FileServer::start(web.path(), 0).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("g.csv.gz");
    let url = format!("{}/green_tripdata_2020-01.csv.gz", server.url());
    let first = download(&url, &dest, &DownloadOptions::default()).await.unwrap();
    assert!(!first.unchanged);
    let again = download(&url, &dest, &DownloadOptions::default()).await.unwrap();
    assert!(again.unchanged, "304: {again:?}");
    assert_eq!((again.bytes, again.last_modified.clone()), (first.bytes, first.last_modified.clone()));
    // The server's copy changes (a newer modification time, another size).
    std::fs::write(&file, b"second, longer version").unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options().write(true).open(&file).unwrap().set_modified(later).unwrap();
    let changed = download(&url, &dest, &DownloadOptions::default()).await.unwrap();
    assert!(!changed.unchanged);
    assert_ne!(changed.last_modified, first.last_modified);
    assert_eq!(std::fs::read(&dest).unwrap(), b"second, longer version");
}

/// A server that drops the first response halfway: the download resumes
/// from where it stopped (a Range request) and ends with every byte once.
#[tokio::test]
async fn an_interrupted_download_resumes_where_it_stopped() {
    let body: Arc<Vec<u8>> = Arc::new((0..500_000u32).flat_map(|i| (i * 7).to_le_bytes()).collect());
    let calls = Arc::new(AtomicUsize::new(0));
    let ranges = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (b, c, r) = (body.clone(), calls.clone(), ranges.clone());
    let app = axum::Router::new().route(
        "/file",
        axum::routing::get(move |headers: HeaderMap| {
            let (body, calls, ranges) = (b.clone(), c.clone(), r.clone());
            async move {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(String::from);
                ranges.lock().unwrap().push(range.clone().unwrap_or_default());
                let total = body.len();
                if n == 0 {
                    // Promise everything, send a third, then fail the stream.
                    let third = body[..total / 3].to_vec();
                    let stream = futures::stream::iter(vec![
                        Ok::<_, std::io::Error>(bytes::Bytes::from(third)),
                        Err(std::io::Error::other("connection reset")),
                    ]);
                    return Response::builder()
                        .header(header::CONTENT_LENGTH, total)
                        .body(Body::from_stream(stream))
                        .unwrap();
                }
                let from: usize = range
                    .as_deref()
                    .and_then(|r| r.strip_prefix("bytes="))
                    .and_then(|r| r.strip_suffix('-'))
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                Response::builder()
                    .status(StatusCode::PARTIAL_CONTENT)
                    .header(header::CONTENT_RANGE, format!("bytes {from}-{}/{total}", total - 1))
                    .header(header::CONTENT_LENGTH, total - from)
                    .body(Body::from(body[from..].to_vec()))
                    .unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("big.bin");
    let opts = DownloadOptions { attempts: 3, first_delay: std::time::Duration::from_millis(10) };
    let got = download(&format!("http://{addr}/file"), &dest, &opts).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), *body, "every byte, once");
    assert_eq!(got.resumed, 1);
    let ranges = ranges.lock().unwrap().clone();
    assert_eq!(ranges.len(), 2);
    assert!(ranges[0].is_empty());
    let asked: usize = ranges[1].trim_start_matches("bytes=").trim_end_matches('-').parse().unwrap();
    assert!(asked > 0 && asked < body.len(), "resumed from byte {asked}");
}

/// A partial file left by an earlier process is resumed only when the file
/// on the server is still the one it was cut from (If-Range with the ETag
/// kept beside it); a changed file comes whole, and a partial file of
/// unknown origin is started over.
#[tokio::test]
async fn a_partial_file_is_resumed_only_if_the_server_file_is_unchanged() {
    let body: Arc<Vec<u8>> = Arc::new((0..100_000u32).flat_map(|i| (i * 3).to_le_bytes()).collect());
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let (b, s) = (body.clone(), seen.clone());
    let app = axum::Router::new().route(
        "/file",
        axum::routing::get(move |headers: HeaderMap| {
            let (body, seen) = (b.clone(), s.clone());
            async move {
                let get =
                    |h| headers.get(h).and_then(|v: &header::HeaderValue| v.to_str().ok()).unwrap_or("").to_string();
                let (range, if_range) = (get(header::RANGE), get(header::IF_RANGE));
                seen.lock().unwrap().push((range.clone(), if_range.clone()));
                let from: usize = range
                    .strip_prefix("bytes=")
                    .and_then(|r| r.strip_suffix('-'))
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                // RFC 9110: a Range whose If-Range does not match is ignored.
                if from == 0 || (!if_range.is_empty() && if_range != "\"v2\"") {
                    return Response::builder()
                        .header(header::ETAG, "\"v2\"")
                        .header(header::CONTENT_LENGTH, body.len())
                        .body(Body::from(body.to_vec()))
                        .unwrap();
                }
                Response::builder()
                    .status(StatusCode::PARTIAL_CONTENT)
                    .header(header::ETAG, "\"v2\"")
                    .header(header::CONTENT_RANGE, format!("bytes {from}-{}/{}", body.len() - 1, body.len()))
                    .header(header::CONTENT_LENGTH, body.len() - from)
                    .body(Body::from(body[from..].to_vec()))
                    .unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/file", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("month.csv.gz");
    let (part, validator) = (out.path().join("month.csv.gz.part"), out.path().join("month.csv.gz.part.validator"));
    let opts = DownloadOptions { attempts: 2, first_delay: std::time::Duration::from_millis(10) };

    // Cut from the same version: resumed from where it stopped.
    std::fs::write(&part, &body[..1000]).unwrap();
    std::fs::write(&validator, "\"v2\"").unwrap();
    download(&url, &dest, &opts).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), *body);
    assert_eq!(seen.lock().unwrap().pop().unwrap(), ("bytes=1000-".to_string(), "\"v2\"".to_string()));
    assert!(!validator.exists(), "nothing left beside the finished file");

    // Cut from an older version: the server sends the new file whole.
    std::fs::write(&part, vec![0xAB; 5000]).unwrap();
    std::fs::write(&validator, "\"v1\"").unwrap();
    download(&url, &dest, &opts).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), *body, "no stale bytes");
    assert_eq!(seen.lock().unwrap().pop().unwrap().1, "\"v1\"");

    // Of unknown origin: started over without a range.
    std::fs::write(&part, vec![0xCD; 5000]).unwrap();
    download(&url, &dest, &opts).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), *body);
    assert_eq!(seen.lock().unwrap().pop().unwrap(), (String::new(), String::new()));
}
