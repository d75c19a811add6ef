//! Automations end to end: the real server and CLI, a real flow failing,
//! and local receivers (a Slack-shaped webhook, a JSON webhook that is down
//! for a while, an SMTP server) recording what they get.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use headwater::prelude::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use super::BIN;

#[flow(name = "nightly-load")]
async fn nightly_load(fail: bool) -> Result<u32> {
    info!("loading");
    if fail {
        bail!("the warehouse refused the load");
    }
    Ok(1)
}

type Inbox = Arc<Mutex<Vec<Value>>>;

/// An HTTP receiver on `listener` that records every JSON body.
fn receive_http(listener: tokio::net::TcpListener) -> Inbox {
    let inbox: Inbox = Arc::default();
    let kept = inbox.clone();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let kept = kept.clone();
        async move {
            kept.lock().unwrap().push(serde_json::from_slice(&body).unwrap_or(Value::Null));
            "ok"
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    inbox
}

/// A minimal SMTP server that records each message's DATA.
fn receive_smtp(listener: tokio::net::TcpListener) -> Arc<Mutex<Vec<String>>> {
    let inbox: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept = inbox.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else { return };
            let kept = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = tokio::io::BufReader::new(read).lines();
                write.write_all(b"220 localhost ESMTP test\r\n").await.unwrap();
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(body) = data.as_mut() {
                        if line == "." {
                            kept.lock().unwrap().push(data.take().unwrap());
                            write.write_all(b"250 queued\r\n").await.unwrap();
                        } else {
                            body.push_str(&line);
                            body.push('\n');
                        }
                        continue;
                    }
                    let verb = line.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 localhost\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await.unwrap();
                            return;
                        }
                        _ => b"250 ok\r\n",
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    inbox
}

pub(super) struct Server {
    child: Child,
    pub(super) url: String,
    _banner: BufReader<ChildStdout>,
}

pub(super) fn start_server(home: &Path) -> Server {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(home.join("server.log")).unwrap();
    let mut child = Command::new(BIN)
        .args(["server", "start", "--port", "0"])
        .env("HEADWATER_HOME", home)
        .env("HEADWATER_UI_URL", "http://headwater.example:4200")
        .env_remove("HEADWATER_API_URL")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut banner = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    banner.read_line(&mut first).unwrap();
    let url = first.trim().rsplit(' ').next().unwrap().to_string();
    Server { child, url, _banner: banner }
}

pub(super) fn stop_server(mut s: Server) {
    let _ = Command::new("kill").args(["-INT", &s.child.id().to_string()]).status();
    assert!(s.child.wait().unwrap().success());
}

pub(super) fn hw_at(home: &Path, url: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(BIN);
    c.args(args).env("HEADWATER_HOME", home).env("HEADWATER_API_URL", url);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

pub(super) fn ok_at(home: &Path, url: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let o = hw_at(home, url, args, env);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

pub(super) async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const SLACK_SECRET: &str = "T0001/B0002/xoxb-sl4ck-s3cret";
const HOOK_TOKEN: &str = "hook-t0ken-5ecret";

/// A failing flow produces exactly one Slack-shaped message with the run's
/// name and link; a receiver that is down gets its message once it is back,
/// across a server restart, and still only once; email goes out through
/// SMTP; no secret (webhook URLs included) shows in the CLI, the API or
/// the server's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_notify_once_even_through_outages_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let slack_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slack_addr = slack_listener.local_addr().unwrap();
    let slack = receive_http(slack_listener);
    let teams_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let teams_url = format!("http://{}/webhookb2/teams-s3cret", teams_listener.local_addr().unwrap());
    let teams = receive_http(teams_listener);
    // The JSON webhook's receiver is down: its port is reserved, not served.
    let hook_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let smtp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let smtp_port = smtp_listener.local_addr().unwrap().port();
    let mail = receive_smtp(smtp_listener);

    let server = start_server(home);
    let mut url = server.url.clone();
    let slack_url = format!("http://{slack_addr}/services/{SLACK_SECRET}");
    let hook_url = format!("http://127.0.0.1:{hook_port}/hook?token={HOOK_TOKEN}");
    ok_at(
        home,
        &url,
        &["block", "create", "slack-webhook", "team-alerts", "-f", "url=env:HW_SLACK"],
        &[("HW_SLACK", &slack_url)],
    );
    ok_at(
        home,
        &url,
        &["block", "create", "ms-teams-webhook", "teams", "-f", "url=env:HW_TEAMS"],
        &[("HW_TEAMS", &teams_url)],
    );
    ok_at(home, &url, &["block", "create", "webhook", "ops-hook", "-f", "url=env:HW_HOOK"], &[("HW_HOOK", &hook_url)]);
    let port = format!("port={smtp_port}");
    ok_at(
        home,
        &url,
        &[
            "block",
            "create",
            "smtp-server",
            "mail",
            "-f",
            "host=127.0.0.1",
            "-f",
            &port,
            "-f",
            "security=none",
            "-f",
            "from=Headwater <hw@example.com>",
        ],
        &[],
    );

    let spec = home.join("automations.yaml");
    std::fs::write(
        &spec,
        r#"
automations:
  - name: notify-failures
    description: Tell the team on Slack
    trigger:
      type: flow-run-state
      states: [Failed, Crashed]
      flows: [nightly-load]
    actions:
      - type: notify
        block: team-alerts
      - type: notify
        block: teams
        subject: "{{ flow.name }}: {{ flow_run.name }} {{ state.name | lower }}"
  - name: page-ops
    trigger: {type: flow-run-state, states: [FAILED], flows: [nightly-load]}
    actions:
      - type: notify
        block: ops-hook
        body: '{"run": "{{ flow_run.name }}", "state": "{{ state.name }}", "link": "{{ flow_run.url }}"}'
  - name: email-failures
    trigger: {type: flow-run-state, states: [Failed], flows: [nightly-load]}
    actions:
      - type: notify
        block: mail
        to: [data-team@example.com]
        subject: "{{ flow.name }} failed"
        body: "Run {{ flow_run.name }} failed: {{ state.message }}\n{{ flow_run.url }}"
"#,
    )
    .unwrap();
    let bad = home.join("bad.yaml");
    std::fs::write(&bad, "name: x\ntrigger: {type: flow-run-state, states: [Faild]}\nactions: [{type: cancel-run}]\n")
        .unwrap();
    let o = hw_at(home, &url, &["automation", "create", "-f", bad.to_str().unwrap()], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("automations[0] (x).trigger.states[0]") && err.contains("Faild"),
        "{err}"
    );
    let created = ok_at(home, &url, &["automation", "create", "-f", spec.to_str().unwrap()], &[]);
    assert!(created.contains("Automation 'notify-failures': on run Failed/Crashed (flows nightly-load)"), "{created}");

    // Flows report to the server; one fails, one succeeds.
    let client_home = tempfile::tempdir().unwrap();
    let engine = headwater::Engine::with_settings(client_home.path(), &[("HEADWATER_API_URL", &url)]).unwrap();
    engine.scope(nightly_load(true)).await.unwrap_err();
    engine.scope(nightly_load(false)).await.unwrap();
    engine.flush().await.unwrap();
    let runs: Value = serde_json::from_str(&ok_at(home, &url, &["flow-run", "ls", "--json"], &[])).unwrap();
    let failed = runs.as_array().unwrap().iter().find(|r| r["state"]["type"] == "FAILED").unwrap();
    let (run_name, run_id) = (failed["name"].as_str().unwrap(), failed["id"].as_str().unwrap());
    let link = format!("http://headwater.example:4200/runs/{run_id}");

    wait_for("the Slack message", Duration::from_secs(30), || !slack.lock().unwrap().is_empty()).await;
    wait_for("the email", Duration::from_secs(30), || !mail.lock().unwrap().is_empty()).await;
    let email = mail.lock().unwrap()[0].clone();
    assert!(email.contains("Subject: nightly-load failed") && email.contains("data-team@example.com"), "{email}");
    assert!(email.contains(run_name) && email.contains("the warehouse refused the load"), "{email}");

    // The webhook's receiver is still down: the delivery waits, its error shown.
    wait_for("a failed attempt", Duration::from_secs(30), || {
        let listed: Value = serde_json::from_str(&ok_at(home, &url, &["automation", "ls", "--json"], &[])).unwrap();
        listed.as_array().unwrap().iter().any(|a| a["name"] == "page-ops" && a["status"]["last_error"].is_string())
    })
    .await;
    let table = ok_at(home, &url, &["automation", "ls"], &[]);
    assert!(table.contains("page-ops") && table.contains("cannot reach the receiver"), "{table}");
    let inspect = ok_at(home, &url, &["automation", "inspect", "page-ops"], &[]);
    assert!(inspect.contains("\"status\": \"pending\""), "{inspect}");
    for shown in [&table, &inspect, &ok_at(home, &url, &["block", "ls", "--json"], &[])] {
        assert!(!shown.contains(HOOK_TOKEN) && !shown.contains(SLACK_SECRET), "a secret leaked: {shown}");
    }

    // The server stops while the delivery is pending; the receiver comes
    // back; a new server process delivers it.
    stop_server(server);
    let hook = receive_http(tokio::net::TcpListener::bind(("127.0.0.1", hook_port)).await.unwrap());
    let server = start_server(home);
    url = server.url.clone();
    wait_for("the webhook delivery", Duration::from_secs(60), || !hook.lock().unwrap().is_empty()).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // room for duplicates, if there were any

    let got = slack.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "exactly one Slack message: {got:?}");
    let text = got[0]["text"].as_str().expect("Slack-shaped: {\"text\": ...}");
    assert!(text.contains(run_name) && text.contains("entered Failed"), "{text}");
    assert!(text.contains(&format!("<{link}|View {run_name} in Headwater>")), "{text}");
    let hooked = hook.lock().unwrap().clone();
    assert_eq!(hooked, vec![serde_json::json!({"run": run_name, "state": "Failed", "link": link})]);
    assert_eq!(mail.lock().unwrap().len(), 1);
    let cards = teams.lock().unwrap().clone();
    assert_eq!(cards.len(), 1, "{cards:?}");
    assert_eq!(cards[0]["@type"], "MessageCard");
    assert_eq!(cards[0]["title"], format!("nightly-load: {run_name} failed"));
    assert!(cards[0]["text"].as_str().unwrap().contains(&link), "{}", cards[0]);

    let listed: Value = serde_json::from_str(&ok_at(home, &url, &["automation", "ls", "--json"], &[])).unwrap();
    for a in listed.as_array().unwrap() {
        let actions = a["actions"].as_array().unwrap().len() as u64;
        assert_eq!(
            (a["status"]["delivered"].as_u64(), a["status"]["pending"].as_u64()),
            (Some(actions), Some(0)),
            "{a}"
        );
    }
    ok_at(home, &url, &["automation", "pause", "notify-failures"], &[]);
    assert!(ok_at(home, &url, &["automation", "ls"], &[]).contains("paused"));
    ok_at(home, &url, &["automation", "resume", "notify-failures"], &[]);
    ok_at(home, &url, &["automation", "delete", "email-failures"], &[]);
    let o = hw_at(home, &url, &["automation", "inspect", "email-failures"], &[]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no automation named 'email-failures'"));
    stop_server(server);

    let log = std::fs::read_to_string(home.join("server.log")).unwrap();
    assert!(log.contains("page-ops"), "the failed attempts are logged: {log}");
    assert!(!log.contains(HOOK_TOKEN) && !log.contains(SLACK_SECRET), "the server log shows a secret: {log}");
}
