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
    let missing =
        download(&format!("{}/yellow/nope.csv.gz", server.url()), &out.path().join("n"), &DownloadOptions::default())
            .await
            .unwrap_err();
    assert!(missing.to_string().contains("404"), "{missing}");
    assert!(!out.path().join("n").exists());
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
