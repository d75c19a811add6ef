//! The few Docker Engine API calls a worker needs, over the engine's unix
//! socket: check or pull an image, create, start, wait for, read the logs
//! of, kill and remove a container.

use std::path::PathBuf;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

const API: &str = "/v1.41";

/// What went wrong talking to the Docker engine.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("DOCKER_HOST={0}: only unix:// sockets are supported")]
    UnsupportedHost(String),
    #[error("cannot reach the Docker engine at {}", socket.display())]
    Unreachable {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the connection to the Docker engine failed")]
    Connection(#[from] hyper::Error),
    #[error("cannot build the request to the Docker engine")]
    Request(#[from] hyper::http::Error),
    #[error("{what}: the Docker engine answered {status}: {message}")]
    Refused { what: String, status: StatusCode, message: String },
    #[error("unreadable answer from the Docker engine")]
    Unreadable(#[from] serde_json::Error),
    #[error("the engine returned no container id")]
    NoContainerId,
    /// A deployment's `job_variables` do not describe a container.
    #[error("{0}")]
    JobVariables(String),
}

type Result<T, E = DockerError> = std::result::Result<T, E>;

#[derive(Clone)]
pub struct Docker {
    socket: PathBuf,
}

impl Docker {
    /// The engine at `DOCKER_HOST` (`unix://…`) or the default socket.
    pub fn from_env() -> Result<Docker> {
        let socket = match std::env::var("DOCKER_HOST") {
            Ok(h) if h.starts_with("unix://") => PathBuf::from(h.trim_start_matches("unix://")),
            Ok(h) if !h.is_empty() => return Err(DockerError::UnsupportedHost(h)),
            _ => PathBuf::from("/var/run/docker.sock"),
        };
        Ok(Docker { socket })
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<(StatusCode, Bytes)> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|source| DockerError::Unreachable { socket: self.socket.clone(), source })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(format!("{API}{path}"))
            .header("Host", "docker")
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        Ok(sender.send_request(req).await?)
    }

    fn error(what: &str, status: StatusCode, body: &Bytes) -> DockerError {
        let message = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
        DockerError::Refused { what: what.to_string(), status, message }
    }

    pub async fn image_exists(&self, image: &str) -> Result<bool> {
        let (status, body) = self.call(Method::GET, &format!("/images/{image}/json"), None).await?;
        match status {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(Docker::error("inspecting the image", s, &body)),
        }
    }

    pub async fn pull(&self, image: &str) -> Result<()> {
        let (status, body) = self.call(Method::POST, &format!("/images/create?fromImage={image}"), None).await?;
        // The engine streams progress; an error can come as a 200 with an
        // "error" entry in the stream.
        let text = String::from_utf8_lossy(&body);
        if !status.is_success() || text.contains("\"error\"") {
            return Err(Docker::error(&format!("pulling {image}"), status, &body));
        }
        Ok(())
    }

    pub async fn create(&self, name: &str, spec: Value) -> Result<String> {
        let (status, body) = self.call(Method::POST, &format!("/containers/create?name={name}"), Some(spec)).await?;
        if status != StatusCode::CREATED {
            return Err(Docker::error("creating the container", status, &body));
        }
        let v: Value = serde_json::from_slice(&body)?;
        v["Id"].as_str().map(str::to_string).ok_or(DockerError::NoContainerId)
    }

    pub async fn start(&self, id: &str) -> Result<()> {
        let (status, body) = self.call(Method::POST, &format!("/containers/{id}/start"), None).await?;
        if !status.is_success() {
            return Err(Docker::error("starting the container", status, &body));
        }
        Ok(())
    }

    /// Waits for the container to stop; returns its exit code.
    pub async fn wait(&self, id: &str) -> Result<i64> {
        let (status, body) = self.call(Method::POST, &format!("/containers/{id}/wait"), None).await?;
        if !status.is_success() {
            return Err(Docker::error("waiting for the container", status, &body));
        }
        let v: Value = serde_json::from_slice(&body)?;
        Ok(v["StatusCode"].as_i64().unwrap_or(-1))
    }

    /// Follows the container's output as it is written, calling `line` with
    /// each complete line (and whether it came from stderr), until the
    /// container stops.
    pub async fn follow_logs(&self, id: &str, mut line: impl FnMut(bool, String)) -> Result<()> {
        let resp = self.send(Method::GET, &format!("/containers/{id}/logs?stdout=1&stderr=1&follow=1"), None).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        if !status.is_success() {
            let bytes = body.collect().await?.to_bytes();
            return Err(Docker::error("reading the container's output", status, &bytes));
        }
        let mut demux = Demux::default();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                demux.push(&data, &mut line);
            }
        }
        demux.finish(&mut line);
        Ok(())
    }

    pub async fn kill(&self, id: &str) -> Result<()> {
        let (status, body) = self.call(Method::POST, &format!("/containers/{id}/kill"), None).await?;
        if !status.is_success() && status != StatusCode::CONFLICT {
            return Err(Docker::error("killing the container", status, &body));
        }
        Ok(())
    }

    pub async fn remove(&self, id: &str) -> Result<()> {
        let (status, body) = self.call(Method::DELETE, &format!("/containers/{id}?force=1"), None).await?;
        if !status.is_success() && status != StatusCode::NOT_FOUND {
            return Err(Docker::error("removing the container", status, &body));
        }
        Ok(())
    }
}

/// Splits the engine's log stream without a TTY — frames of an 8-byte
/// header (stream, 0, 0, 0, big-endian length) and the payload — into lines
/// per stream, as the bytes arrive (a frame or a line may be cut anywhere).
#[derive(Default)]
struct Demux {
    pending: Vec<u8>,
    /// Unfinished lines of stdout and stderr.
    partial: [Vec<u8>; 2],
}

impl Demux {
    fn push(&mut self, bytes: &[u8], line: &mut impl FnMut(bool, String)) {
        self.pending.extend_from_slice(bytes);
        let mut at = 0;
        while self.pending.len() - at >= 8 {
            let h = &self.pending[at..at + 8];
            let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
            if self.pending.len() - at - 8 < len {
                break;
            }
            let stderr = h[0] == 2;
            let payload = &self.pending[at + 8..at + 8 + len];
            let buf = &mut self.partial[usize::from(stderr)];
            for &b in payload {
                if b == b'\n' {
                    line(stderr, String::from_utf8_lossy(buf).trim_end_matches('\r').to_string());
                    buf.clear();
                } else {
                    buf.push(b);
                }
            }
            at += 8 + len;
        }
        self.pending.drain(..at);
    }

    /// The last lines, if they did not end with a newline.
    fn finish(&mut self, line: &mut impl FnMut(bool, String)) {
        for (i, buf) in self.partial.iter_mut().enumerate() {
            if !buf.is_empty() {
                line(i == 1, String::from_utf8_lossy(buf).into_owned());
                buf.clear();
            }
        }
    }
}

fn no_good(why: impl Into<String>) -> DockerError {
    DockerError::JobVariables(why.into())
}

/// What a Docker deployment's `job_variables` say, with defaults.
#[derive(Debug)]
pub struct JobSpec {
    pub image: String,
    pub pull_policy: String,
    pub network_mode: Option<String>,
    pub volumes: Vec<String>,
    pub env: Vec<(String, String)>,
    pub auto_remove: bool,
}

impl JobSpec {
    pub fn from_variables(vars: &Value) -> Result<JobSpec> {
        let image = vars["image"]
            .as_str()
            .ok_or_else(|| no_good("a Docker deployment needs work_pool.job_variables.image"))?
            .to_string();
        let pull_policy = vars["pull_policy"].as_str().unwrap_or("if_not_present").to_string();
        if !["always", "if_not_present", "never"].contains(&pull_policy.as_str()) {
            return Err(no_good(format!(
                "job_variables.pull_policy is '{pull_policy}'; expected always, if_not_present or never"
            )));
        }
        let volumes =
            vars["volumes"].as_array().map(|v| v.iter().filter_map(|s| s.as_str().map(String::from)).collect());
        let env = vars["env"].as_object().map(|m| {
            m.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), String::from))).collect()
        });
        Ok(JobSpec {
            image,
            pull_policy,
            network_mode: vars["network_mode"].as_str().map(String::from),
            volumes: volumes.unwrap_or_default(),
            env: env.unwrap_or_default(),
            auto_remove: vars["auto_remove"].as_bool().unwrap_or(true),
        })
    }

    /// The engine's container spec for `cmd` with `env`, started in
    /// `workdir` if given.
    pub fn container(
        &self,
        cmd: &[String],
        env: &[(String, String)],
        binds: &[String],
        workdir: Option<&str>,
    ) -> Value {
        let env: Vec<String> = env.iter().chain(self.env.iter()).map(|(k, v)| format!("{k}={v}")).collect();
        let mut all_binds = self.volumes.clone();
        all_binds.extend(binds.iter().cloned());
        let mut host = json!({ "Binds": all_binds });
        if let Some(mode) = &self.network_mode {
            host["NetworkMode"] = json!(mode);
        }
        let mut spec = json!({ "Image": self.image, "Cmd": cmd, "Env": env, "HostConfig": host, "Tty": false });
        if let Some(dir) = workdir {
            spec["WorkingDir"] = json!(dir);
        }
        spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_frames_split_by_stream_however_the_bytes_arrive() {
        let mut bytes = vec![1, 0, 0, 0, 0, 0, 0, 9];
        bytes.extend_from_slice(b"hello\nwor");
        bytes.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 4]);
        bytes.extend_from_slice(b"bad\n");
        bytes.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 7]);
        bytes.extend_from_slice(b"ld\r\nend");
        // Every way of cutting the stream in two gives the same lines.
        for cut in 0..bytes.len() {
            let mut lines = Vec::new();
            let mut demux = Demux::default();
            let mut collect = |stderr: bool, l: String| lines.push((stderr, l));
            demux.push(&bytes[..cut], &mut collect);
            demux.push(&bytes[cut..], &mut collect);
            demux.finish(&mut collect);
            let expected =
                [(false, "hello"), (true, "bad"), (false, "world"), (false, "end")].map(|(e, l)| (e, l.to_string()));
            assert_eq!(lines, expected, "cut at {cut}");
        }
    }

    #[test]
    fn job_variables_are_checked() {
        assert!(JobSpec::from_variables(&json!({})).unwrap_err().to_string().contains("job_variables.image"));
        let e = JobSpec::from_variables(&json!({"image": "x", "pull_policy": "sometimes"})).unwrap_err();
        assert!(e.to_string().contains("pull_policy"));
        let spec = JobSpec::from_variables(&json!({"image": "flows:1", "volumes": ["/data:/data"], "env": {"A": "1"}}))
            .unwrap();
        let c = spec.container(&["/flows".into()], &[("B".into(), "2".into())], &["/h:/h".into()], Some("/tmp/r/x"));
        assert_eq!(c["Image"], "flows:1");
        assert_eq!(c["Env"], json!(["B=2", "A=1"]));
        assert_eq!(c["HostConfig"]["Binds"], json!(["/data:/data", "/h:/h"]));
        assert_eq!(c["WorkingDir"], "/tmp/r/x");
    }
}
