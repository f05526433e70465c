//! Reports a cold-start failure through the Lambda Runtime API's
//! `POST /2018-06-01/runtime/init/error`, as a runtime that validates its
//! configuration before taking work would. `lambda_runtime` only reports init
//! errors for SnapStart hooks, so the probe speaks the two-line protocol itself.

use std::io::{Read, Write};
use std::net::TcpStream;

pub async fn report(error_type: &str, error_message: &str) -> Result<(), lambda_runtime::Error> {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API")?;
    let body =
        serde_json::json!({ "errorType": error_type, "errorMessage": error_message }).to_string();
    let request = format!(
        "POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: {api}\r\n\
         Lambda-Runtime-Function-Error-Type: {error_type}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(&api)?;
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.lines().next().unwrap_or_default().to_owned();
    println!("PROBE-INIT init/error answered: {status}");
    Ok(())
}
