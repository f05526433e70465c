//! Canned HTTP responses for tests: errors as the services put them on the wire, so
//! the SDK's real deserializers turn them into modeled errors with codes. Built for this
//! crate's tests, and for other crates' tests with the `test-util` feature:
//! `sluice-aws = { workspace = true, features = ["test-util"] }` in `[dev-dependencies]`.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

/// A response with `status` and `body`, no headers.
pub fn http_response(status: u16, body: &str) -> HttpResponse {
    HttpResponse::new(
        StatusCode::try_from(status).unwrap(),
        SdkBody::from(body.to_owned()),
    )
}

/// An awsJson error (Kinesis, DynamoDB, SQS).
pub fn json_error(status: u16, error_type: &str, message: &str) -> HttpResponse {
    let mut response = http_response(
        status,
        &format!(r#"{{"__type":"{error_type}","message":"{message}"}}"#),
    );
    response
        .headers_mut()
        .insert("content-type", "application/x-amz-json-1.0");
    response
}

/// An SQS awsJson error carrying the legacy query error code header, as SQS sends it.
pub fn sqs_query_compatible_error(
    status: u16,
    error_type: &str,
    query_code: &str,
    message: &str,
) -> HttpResponse {
    let mut response = json_error(status, error_type, message);
    response
        .headers_mut()
        .insert("x-amzn-query-error", format!("{query_code};Sender"));
    response
}

/// A restXml error (S3).
pub fn xml_error(status: u16, code: &str, message: &str) -> HttpResponse {
    let mut response = http_response(
        status,
        &format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>r1</RequestId></Error>"
        ),
    );
    response
        .headers_mut()
        .insert("content-type", "application/xml");
    response
}
