//! Direct-invoke behaviours that exercise Lambda's limits:
//!
//! | event | behaviour |
//! |---|---|
//! | `{"respond_bytes": n}` | answers a JSON string of `n` bytes in all (its quotes included) |
//! | `{"allocate_mb": n}` | allocates and touches `n` MiB, then answers how much it held |
//! | `{"tmp": {"write": "name", "bytes": n, "sleep_ms": t}}` | writes `n` bytes to `/tmp/<name>`, sleeps `t` ms, then answers the names in `/tmp`, the write's outcome and its process id |
//! | `{"chain": {"id": "c", "hop": k, "until": m}}` | logs `PROBE-CHAIN id=c hop=k`, then invokes its own function asynchronously with `hop: k + 1` while `k < m` (through the AWS SDK, which carries the trace header on) |

use std::io::Write;

use serde_json::{Value, json};

use crate::handler::ProbeError;

pub fn respond_bytes(n: u64) -> Value {
    // a JSON string of n bytes: n - 2 characters between the quotes
    let inner = usize::try_from(n.saturating_sub(2)).unwrap_or(usize::MAX);
    Value::String("x".repeat(inner))
}

pub fn allocate(mb: u64) -> Value {
    let mut held: Vec<Vec<u8>> = Vec::new();
    for i in 0..mb {
        // one MiB per step, every page written so it is resident
        let mut block = vec![0u8; 1024 * 1024];
        for page in block.chunks_mut(4096) {
            page[0] = u8::try_from(i % 251).unwrap_or(0) + 1;
        }
        held.push(block);
    }
    let total: u64 = held.iter().map(|b| u64::from(b[0])).sum();
    println!("PROBE-ALLOCATED mb={mb} checksum={total}");
    json!({"allocated_mb": mb, "checksum": total})
}

pub async fn tmp(spec: &Value) -> Value {
    let mut outcome = Value::Null;
    if let Some(name) = spec.get("write").and_then(Value::as_str) {
        let bytes = spec.get("bytes").and_then(Value::as_u64).unwrap_or(1);
        let path = std::path::Path::new("/tmp").join(name);
        let written = std::fs::File::create(&path).and_then(|mut file| {
            let chunk = vec![b'x'; 1024 * 1024];
            let mut left = bytes;
            while left > 0 {
                let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
                file.write_all(&chunk[..n])?;
                left -= n as u64;
            }
            file.sync_all()
        });
        outcome = match written {
            Ok(()) => json!({"ok": true}),
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        };
        if written_failed(&outcome) {
            let _ = std::fs::remove_file(&path);
        }
    }
    if let Some(ms) = spec.get("sleep_ms").and_then(Value::as_u64) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let mut names: Vec<String> = std::fs::read_dir("/tmp")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    json!({
        "tmp": names,
        "write": outcome,
        "tmpdir": std::env::var("TMPDIR").ok(),
        "pid": std::process::id(),
    })
}

fn written_failed(outcome: &Value) -> bool {
    outcome.get("ok") == Some(&Value::Bool(false))
}

pub async fn chain(spec: &Value, trace_id: Option<&str>) -> Result<Value, ProbeError> {
    let id = spec.get("id").and_then(Value::as_str).unwrap_or("chain");
    let hop = spec.get("hop").and_then(Value::as_u64).unwrap_or(1);
    let until = spec.get("until").and_then(Value::as_u64).unwrap_or(hop);
    println!(
        "PROBE-CHAIN id={id} hop={hop} trace={}",
        trace_id.unwrap_or("")
    );
    if hop >= until {
        return Ok(json!({"chain": id, "hop": hop, "done": true}));
    }
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME")
        .map_err(|_| ProbeError::Requested("AWS_LAMBDA_FUNCTION_NAME is not set".into()))?;
    // The workspace compiles the SDK without its default HTTPS client: give it one.
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https)
        .load()
        .await;
    let client = aws_sdk_lambda::Client::new(&config);
    let next = json!({"chain": {"id": id, "hop": hop + 1, "until": until}});
    client
        .invoke()
        .function_name(function)
        .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
        .payload(aws_sdk_lambda::primitives::Blob::new(next.to_string()))
        .send()
        .await
        .map_err(|e| {
            let message = format!(
                "invoking hop {} failed: {}",
                hop + 1,
                aws_sdk_lambda::error::DisplayErrorContext(&e)
            );
            println!("PROBE-CHAIN-ERROR id={id} {message}");
            ProbeError::Requested(message)
        })?;
    Ok(json!({"chain": id, "hop": hop, "next": hop + 1}))
}
