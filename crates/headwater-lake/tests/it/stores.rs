use headwater_lake::{partition_key, Lake};

async fn replaces_partitions_and_round_trips(lake: &Lake) {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("a.parquet");
    std::fs::write(&first, vec![1u8; 9 * 1024 * 1024 + 17]).unwrap();
    let key = partition_key("yellow", 2021, 1);
    assert_eq!(key, "yellow/year=2021/month=01/data.parquet");
    assert!(!lake.exists(&key).await.unwrap());
    assert_eq!(lake.put_file(&key, &first).await.unwrap(), 9 * 1024 * 1024 + 17);
    let second = dir.path().join("b.parquet");
    std::fs::write(&second, b"second version").unwrap();
    lake.put_file(&key, &second).await.unwrap();
    lake.put_file(&partition_key("yellow", 2021, 2), &second).await.unwrap();
    let listed = lake.list("yellow").await.unwrap();
    assert_eq!(
        listed,
        [(key.clone(), 14), (partition_key("yellow", 2021, 2), 14)],
        "writing a month again replaces it, never a second copy"
    );
    let back = dir.path().join("back.parquet");
    lake.get_to_file(&key, &back).await.unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), b"second version");
    let e = lake.get_to_file("yellow/none", &back).await.unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    lake.delete(&key).await.unwrap();
    assert!(!lake.exists(&key).await.unwrap());
}

#[tokio::test]
async fn a_local_lake() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    replaces_partitions_and_round_trips(&lake).await;
    // Nothing but finished files in the folder.
    let leftovers: Vec<_> =
        walk(&dir.path().join("lake")).into_iter().filter(|p| !p.ends_with("data.parquet")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Parts that killed uploads left in a local lake (`data.parquet#N`, which
/// readers never see) are swept by the next write of that file once they
/// are an hour old; a recent one (perhaps a live upload) stays.
#[tokio::test]
async fn abandoned_upload_parts_are_swept_by_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::local(&dir.path().join("lake")).unwrap();
    let folder = dir.path().join("lake/yellow/year=2021/month=01");
    std::fs::create_dir_all(&folder).unwrap();
    let (old, recent, other) = (folder.join("data.parquet#3"), folder.join("data.parquet#4"), folder.join("notes#1"));
    for p in [&old, &recent, &other] {
        std::fs::write(p, b"partial").unwrap();
    }
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for p in [&old, &other] {
        std::fs::File::options().write(true).open(p).unwrap().set_modified(two_hours_ago).unwrap();
    }
    let src = dir.path().join("src.parquet");
    std::fs::write(&src, b"PAR1 whole file PAR1").unwrap();
    lake.put_file("yellow/year=2021/month=01/data.parquet", &src).await.unwrap();
    assert!(!old.exists(), "an hour-old part is swept");
    assert!(recent.exists(), "a recent part may be a live upload: kept");
    assert!(other.exists(), "only parts of the file written are touched");
    assert_eq!(std::fs::read(folder.join("data.parquet")).unwrap(), b"PAR1 whole file PAR1");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

/// An S3 bucket on an S3-compatible server on loopback (moto, started by
/// scripts/test; HEADWATER_TEST_S3_ENDPOINT names it).
#[tokio::test]
async fn an_s3_lake() {
    let Some(endpoint) = std::env::var("HEADWATER_TEST_S3_ENDPOINT").ok().filter(|e| !e.is_empty()) else {
        assert!(std::env::var("CI").is_err(), "CI must run the S3 test: scripts/test starts the S3 server");
        eprintln!("SKIPPED: HEADWATER_TEST_S3_ENDPOINT is not set (./scripts/test starts an S3-compatible server)");
        return;
    };
    use headwater_blocks::{AwsCredentials, S3Bucket, Secret};
    let bucket = format!("lake-{}", std::process::id());
    // moto creates buckets on a plain PUT.
    let made = reqwest_put(&format!("{endpoint}/{bucket}")).await;
    assert!(made, "created the test bucket");
    let block = S3Bucket {
        bucket_name: bucket,
        bucket_folder: Some("taxi".into()),
        credentials: Some(AwsCredentials {
            aws_access_key_id: Some("testing".into()),
            aws_secret_access_key: Some(Secret::new("testing")),
            aws_session_token: None,
            region_name: Some("us-east-1".into()),
            endpoint_url: Some(endpoint),
        }),
    };
    let lake = Lake::from_s3(&block).unwrap();
    replaces_partitions_and_round_trips(&lake).await;
}

async fn reqwest_put(url: &str) -> bool {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new().put(url).send().await.is_ok_and(|r| r.status().is_success())
}
