//! A fake external job API for the job-poller (the contract in the README's job-poller section): `POST /jobs`
//! starts a job (idempotent per `Idempotency-Key`), `GET /jobs/{id}` answers `RUNNING`
//! until the job's duration has passed, then `SUCCEEDED`. Bearer token checked.
//!
//! Blocking std networking on its own threads: the function under LocalStack runs as a
//! local process and calls it on 127.0.0.1, and the demo needs no async server stack.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    jobs: HashMap<String, Instant>,
    by_key: HashMap<String, String>,
    starts: usize,
    polls: usize,
    refused: usize,
}

#[derive(Clone)]
pub struct FakeJobApi {
    state: Arc<Mutex<State>>,
    tokens: Arc<Vec<String>>,
    duration: Duration,
}

/// What the API saw.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub jobs: usize,
    pub starts: usize,
    pub polls: usize,
    pub refused: usize,
}

impl FakeJobApi {
    /// Binds `addr` (e.g. `127.0.0.1:18080`) and serves on a background thread.
    /// `secret` is the token secret's value: a bare token or `{"token": "..."}`.
    pub fn start(addr: &str, secret: &str, duration: Duration) -> std::io::Result<FakeJobApi> {
        let listener = TcpListener::bind(addr)?;
        let mut tokens = vec![secret.to_owned()];
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(secret)
            && let Some(serde_json::Value::String(t)) = map.get("token")
        {
            tokens.push(t.clone());
        }
        let api = FakeJobApi {
            state: Arc::default(),
            tokens: Arc::new(tokens),
            duration,
        };
        let server = api.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let server = server.clone();
                std::thread::spawn(move || {
                    let _ = server.serve(stream);
                });
            }
        });
        Ok(api)
    }

    pub fn stats(&self) -> Stats {
        let s = self.state.lock().unwrap();
        Stats {
            jobs: s.jobs.len(),
            starts: s.starts,
            polls: s.polls,
            refused: s.refused,
        }
    }

    fn serve(&self, stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut writer = stream;
        loop {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line)? == 0 {
                return Ok(());
            }
            let mut headers = HashMap::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
            }
            let length: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body)?;
            let mut parts = request_line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let (status, answer) = self.answer(method, path, &headers, &body);
            let data = answer.to_string();
            write!(
                writer,
                "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{data}",
                if status < 400 { "OK" } else { "Error" },
                data.len()
            )?;
            writer.flush()?;
        }
    }

    fn answer(
        &self,
        method: &str,
        path: &str,
        headers: &HashMap<String, String>,
        body: &[u8],
    ) -> (u16, serde_json::Value) {
        use serde_json::json;
        let mut state = self.state.lock().unwrap();
        let authorised = headers
            .get("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| self.tokens.iter().any(|k| k == t));
        if !authorised {
            state.refused += 1;
            return (401, json!({"error": "bad token"}));
        }
        match (method, path) {
            ("POST", "/jobs") => {
                state.starts += 1;
                let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                let key = headers
                    .get("idempotency-key")
                    .cloned()
                    .or_else(|| request["idempotency_key"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                if let Some(id) = state.by_key.get(&key) {
                    return (200, json!({"job_id": id, "status": "RUNNING"}));
                }
                let id = format!("demo-job-{}", state.jobs.len() + 1);
                state
                    .jobs
                    .insert(id.clone(), Instant::now() + self.duration);
                state.by_key.insert(key, id.clone());
                (201, json!({"job_id": id, "status": "RUNNING"}))
            }
            ("GET", p) if p.starts_with("/jobs/") => {
                state.polls += 1;
                let id = &p["/jobs/".len()..];
                match state.jobs.get(id) {
                    None => (404, json!({"error": "no such job"})),
                    Some(ends) if Instant::now() < *ends => {
                        (200, json!({"job_id": id, "status": "RUNNING"}))
                    }
                    Some(_) => (
                        200,
                        json!({"job_id": id, "status": "SUCCEEDED", "message": "report loaded"}),
                    ),
                }
            }
            _ => (404, json!({"error": "no such route"})),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(addr: &str, request: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(s);
        let mut out = String::new();
        let mut line = String::new();
        let mut length = 0;
        while reader.read_line(&mut line).unwrap() > 0 {
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            out.push_str(&line);
            if line == "\r\n" {
                break;
            }
            line.clear();
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        out + &String::from_utf8(body).unwrap()
    }

    #[test]
    fn starts_once_per_key_and_finishes_after_the_duration() {
        let addr = "127.0.0.1:18779";
        let api =
            FakeJobApi::start(addr, r#"{"token":"t0k"}"#, Duration::from_millis(200)).unwrap();
        let body = r#"{"idempotency_key":"k1"}"#;
        let post = format!(
            "POST /jobs HTTP/1.1\r\nAuthorization: Bearer t0k\r\nIdempotency-Key: k1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        assert!(call(addr, &post).contains("demo-job-1"));
        assert!(
            call(addr, &post).contains("demo-job-1"),
            "same key, same job"
        );
        let get = "GET /jobs/demo-job-1 HTTP/1.1\r\nAuthorization: Bearer t0k\r\n\r\n";
        assert!(call(addr, get).contains("RUNNING"));
        std::thread::sleep(Duration::from_millis(250));
        assert!(call(addr, get).contains("SUCCEEDED"));
        let bad = "GET /jobs/demo-job-1 HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n";
        assert!(call(addr, bad).starts_with("HTTP/1.1 401"));
        let stats = api.stats();
        assert_eq!((stats.jobs, stats.starts, stats.refused), (1, 2, 1));
    }
}
