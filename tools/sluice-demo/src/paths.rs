//! The five paths through the pipeline. Each sends its generated input, polls the real
//! outputs until the expected counts are reached or the deadline passes (printing
//! progress), and returns summary rows. Everything a run writes carries its run id, so
//! runs against one stack (or a stack others use) count only their own outputs.

use crate::job_api::FakeJobApi;
use crate::scenario::{self, CrashKind, Scale};
use crate::summary::Row;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

pub type Outputs = BTreeMap<String, String>;

/// Everything the paths share.
pub struct Ctx {
    pub endpoint: String,
    pub outputs: Outputs,
    pub run: String,
    pub scale: Scale,
    pub seed: u64,
    pub now_ms: i64,
    pub timeout: Duration,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub apigateway: aws_sdk_apigateway::Client,
}

impl Ctx {
    fn out(&self, key: &str) -> Result<&str, String> {
        self.outputs
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("stack output {key} missing"))
    }

    /// True when the stack has every output of a path (a function that is not in the
    /// template is not in the demo).
    pub fn has(&self, keys: &[&str]) -> bool {
        keys.iter().all(|k| self.outputs.contains_key(*k))
    }
}

fn err<E: std::error::Error>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| {
        format!(
            "{what}: {}",
            aws_smithy_types::error::display::DisplayErrorContext(e)
        )
    }
}

fn progress(function: &str, message: &str) {
    println!("  [{function}] {message}");
}

/// Polls `check` (which returns (observed, done, progress text)) every second until done
/// or the deadline; prints progress every 5 s. Returns the last observation and the
/// elapsed time since `start` when done.
async fn poll<F, Fut>(
    function: &str,
    start: Instant,
    timeout: Duration,
    mut check: F,
) -> (u64, Option<u64>, String)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(u64, bool, String), String>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_print = Instant::now();
    let mut last = (0, String::new());
    loop {
        match check().await {
            Ok((n, true, text)) => return (n, Some(start.elapsed().as_millis() as u64), text),
            Ok((n, false, text)) => last = (n, text),
            Err(e) => last.1 = format!("(retrying: {e})"),
        }
        if Instant::now() > deadline {
            return (
                last.0,
                None,
                format!("timed out after {} s; last: {}", timeout.as_secs(), last.1),
            );
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            progress(function, &format!("waiting: {}", last.1));
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn get_bytes(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
    let got = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(err("GetObject"))?;
    let body = got.body.collect().await.map_err(err("read body"))?;
    Ok(body.into_bytes().to_vec())
}

async fn list(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<aws_sdk_s3::types::Object>, String> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(err("ListObjectsV2"))?;
        out.extend(page.contents().iter().cloned());
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
            _ => return Ok(out),
        }
    }
}

/// Receives from a queue; bodies `keep` accepts are deleted and returned, the rest are
/// made visible again at once (others may be reading the same queue).
async fn take_messages(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<String>, String> {
    let got = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .visibility_timeout(20)
        .send()
        .await
        .map_err(err("ReceiveMessage"))?;
    let mut mine = Vec::new();
    for m in got.messages() {
        let (body, handle) = (m.body().unwrap_or(""), m.receipt_handle().unwrap_or(""));
        if keep(body) {
            mine.push(body.to_owned());
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(handle)
                .send()
                .await
                .map_err(err("DeleteMessage"))?;
        } else {
            let _ = sqs
                .change_message_visibility()
                .queue_url(url)
                .receipt_handle(handle)
                .visibility_timeout(0)
                .send()
                .await;
        }
    }
    Ok(mine)
}

fn queue_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

// --- ingest-api -> Kinesis -> kinesis-archiver -----------------------------------

pub async fn ingest(ctx: &Ctx) -> Vec<Row> {
    match ingest_inner(ctx).await {
        Ok(rows) => rows,
        Err(e) => vec![Row::failed("ingest-api -> kinesis-archiver", e)],
    }
}

async fn ingest_inner(ctx: &Ctx) -> Result<Vec<Row>, String> {
    let api_id = ctx.out("IngestApiId")?;
    let stage = ctx.out("IngestApiStageName")?;
    let stream = ctx.out("EventStreamName")?;
    let bucket = ctx.out("ArchiveBucketName")?.to_owned();
    let location = ctx.out("ArchiveLocation")?;
    let prefix = location
        .strip_prefix(&format!("s3://{bucket}/"))
        .unwrap_or("")
        .to_owned();
    let key = ctx
        .apigateway
        .get_api_key()
        .api_key(ctx.out("IngestApiKeyId")?)
        .include_value(true)
        .send()
        .await
        .map_err(err("GetApiKey"))?
        .value()
        .unwrap_or_default()
        .to_owned();
    let url = format!("{}/_aws/execute-api/{api_id}/{stage}/events", ctx.endpoint);

    let mut rng = scenario::rng(ctx.seed);
    let events = scenario::player_events(&mut rng, &ctx.run, ctx.scale.events, ctx.now_ms);
    let bodies: Vec<(usize, Vec<u8>, &str)> = events
        .chunks(ctx.scale.events_per_post)
        .enumerate()
        .map(|(i, chunk)| {
            if i % 4 == 3 {
                (
                    chunk.len(),
                    serde_json::to_vec(chunk).unwrap(),
                    "application/json",
                )
            } else {
                (chunk.len(), scenario::ndjson(chunk), "application/x-ndjson")
            }
        })
        .collect();
    let posts = bodies.len();
    progress(
        "ingest-api",
        &format!("POST {} events in {posts} requests to {url}", events.len()),
    );
    let client: HttpClient<HttpConnector, Full<Bytes>> =
        HttpClient::builder(TokioExecutor::new()).build_http();
    let start = Instant::now();
    let results: Vec<Result<(usize, u16, String, u64), String>> = futures::stream::iter(bodies)
        .map(|(n, body, content_type)| {
            let (client, url, key) = (client.clone(), url.clone(), key.clone());
            async move {
                // A client's duty under at-least-once: a 5xx or a lost connection means
                // "not known to be written", so the body is sent again (up to 3 times).
                let mut retries = 0;
                loop {
                    let request = http::Request::post(&url)
                        .header("content-type", content_type)
                        .header("x-api-key", &key)
                        .body(Full::new(Bytes::from(body.clone())))
                        .map_err(|e| e.to_string())?;
                    let answer = match client.request(request).await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            match response.into_body().collect().await {
                                Ok(b) => Ok((
                                    status,
                                    String::from_utf8_lossy(&b.to_bytes()).into_owned(),
                                )),
                                Err(e) => Err(format!("reading the answer: {e}")),
                            }
                        }
                        Err(e) => Err(format!("POST: {e}")),
                    };
                    match answer {
                        Ok((status, text)) if status < 500 || retries == 3 => {
                            return Ok((n, status, text, retries));
                        }
                        Err(e) if retries == 3 => return Err(e),
                        _ => {
                            retries += 1;
                            tokio::time::sleep(Duration::from_millis(500 * retries)).await;
                        }
                    }
                }
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let post_ms = start.elapsed().as_millis() as u64;
    let mut accepted = 0u64;
    let mut failures = Vec::new();
    let mut resent = 0;
    for result in results {
        if let Ok((_, _, _, r)) = &result {
            resent += r;
        }
        match result {
            Ok((_, 202, body, _)) => {
                accepted += serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["accepted"].as_u64())
                    .unwrap_or(0);
            }
            Ok((n, status, body, _)) => failures.push(format!("{n} events: {status} {body}")),
            Err(e) => failures.push(e),
        }
    }
    let expected = events.len() as u64;
    let mut rows = vec![Row {
        input: format!("{expected} player events in {posts} POSTs (NDJSON and JSON arrays)"),
        output: if resent > 0 {
            format!("{accepted} accepted (202; {resent} POSTs resent after a 5xx or lost answer)")
        } else {
            format!("{accepted} accepted (202)")
        },
        location: format!("Kinesis stream {stream}"),
        expected,
        observed: accepted,
        latency_ms: Some(post_ms),
        ok: accepted == expected,
        note: failures.first().cloned().unwrap_or_default(),
        ..Row::new("ingest-api")
    }];
    progress(
        "ingest-api",
        &format!("{accepted}/{expected} accepted in {post_ms} ms"),
    );

    // The archive: objects written since the run started, under this year's prefix.
    let year_prefix = format!("{prefix}{}/", scenario::hour_of(ctx.now_ms).0);
    let since = aws_smithy_types::DateTime::from_millis(ctx.now_ms - 120_000);
    let marker = format!("\"demo_run\":\"{}\"", ctx.run);
    let mut seen: HashMap<String, (String, BTreeSet<u64>, u64)> = HashMap::new();
    let (s3, run_objects) = (&ctx.s3, std::cell::Cell::new(0usize));
    let seen_ref = std::cell::RefCell::new(&mut seen);
    let (observed, latency, text) = poll("kinesis-archiver", start, ctx.timeout, || {
        let (bucket, year_prefix, marker, seen) = (&bucket, &year_prefix, &marker, &seen_ref);
        let run_objects = &run_objects;
        async move {
            for object in list(s3, bucket, year_prefix).await? {
                let (Some(key), Some(etag)) = (object.key(), object.e_tag()) else {
                    continue;
                };
                if object.last_modified().is_some_and(|t| *t < since) {
                    continue;
                }
                if seen.borrow().get(key).is_some_and(|(e, _, _)| e == etag) {
                    continue;
                }
                let raw = get_bytes(s3, bucket, key).await?;
                let text =
                    sluice_codec::bzip2::decompress(&raw).map_err(|e| format!("{key}: {e}"))?;
                let mut seqs = BTreeSet::new();
                let mut lines = 0;
                for line in text.split(|b| *b == b'\n') {
                    if !line.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                        continue;
                    }
                    lines += 1;
                    if let Some(seq) = serde_json::from_slice::<serde_json::Value>(line)
                        .ok()
                        .and_then(|v| v["seq"].as_u64())
                    {
                        seqs.insert(seq);
                    }
                }
                seen.borrow_mut()
                    .insert(key.to_owned(), (etag.to_owned(), seqs, lines));
            }
            let seen = seen.borrow();
            let mine: Vec<_> = seen.values().filter(|(_, _, lines)| *lines > 0).collect();
            run_objects.set(mine.len());
            let distinct: BTreeSet<u64> = mine
                .iter()
                .flat_map(|(_, s, _)| s.iter().copied())
                .collect();
            let n = distinct.len() as u64;
            Ok((
                n,
                n >= expected,
                format!("{n}/{expected} records in {} objects", mine.len()),
            ))
        }
    })
    .await;
    let lines: u64 = seen.values().map(|(_, _, l)| *l).sum();
    rows.push(Row {
        input: format!("Kinesis records of {expected} events"),
        output: format!(
            "{observed} distinct events ({lines} lines) in {} bzip2 objects",
            run_objects.get()
        ),
        location: format!("s3://{bucket}/{year_prefix}"),
        expected,
        observed,
        latency_ms: latency,
        ok: observed == expected && latency.is_some(),
        note: if latency.is_some() {
            String::new()
        } else {
            text
        },
        ..Row::new("kinesis-archiver")
    });
    Ok(rows)
}

// --- avro-converter --------------------------------------------------------------

pub async fn avro(ctx: &Ctx) -> Vec<Row> {
    match avro_inner(ctx).await {
        Ok(rows) => rows,
        Err(e) => vec![Row::failed("avro-converter", e)],
    }
}

async fn avro_inner(ctx: &Ctx) -> Result<Vec<Row>, String> {
    let raw = ctx.out("AvroRawBucketName")?;
    let input_prefix = ctx.out("AvroInputPrefix")?;
    let out_bucket = ctx.out("AvroOutputBucketName")?.to_owned();
    let out_prefix = ctx.out("AvroOutputPrefix")?.to_owned();
    let error_prefix = ctx.out("AvroErrorPrefix")?.to_owned();
    let mut rng = scenario::rng(ctx.seed ^ 0xa5);
    let files = scenario::avro_files(
        &mut rng,
        &ctx.run,
        ctx.scale.avro_files,
        ctx.scale.records_per_file,
        ctx.now_ms,
    );
    let dir = format!("{input_prefix}demo/{}/", ctx.run);
    let records: usize = files.len() * ctx.scale.records_per_file;
    progress(
        "avro-converter",
        &format!(
            "PUT {} snappy JSON files ({records} records) to s3://{raw}/{dir}",
            files.len()
        ),
    );
    let start = Instant::now();
    for (i, file) in files.iter().enumerate() {
        // Both snappy wire formats producers use: framed and raw block.
        let body = if i % 2 == 0 {
            sluice_codec::snappy::compress_framed(&file.ndjson)
        } else {
            sluice_codec::snappy::compress_raw(&file.ndjson)
        };
        ctx.s3
            .put_object()
            .bucket(raw)
            .key(format!("{dir}{}.json.snappy", file.stem))
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(err("PutObject"))?;
    }
    let mut expected_keys: BTreeMap<String, usize> = BTreeMap::new();
    for file in &files {
        for (hour, n) in &file.per_hour {
            // The converter names its files <stem>.<tag of the input key>.avro.
            let input_key = format!("{dir}{}.json.snappy", file.stem);
            let key = format!(
                "{out_prefix}{}{}.{}.avro",
                scenario::hive_path(*hour),
                file.stem,
                sluice_partition::source_tag(&input_key)
            );
            expected_keys.insert(key, *n);
        }
    }
    let expected_records: u64 = expected_keys.values().map(|n| *n as u64).sum();
    let expected_rejects: u64 = files.iter().map(|f| f.rejected as u64).sum();
    let hours: BTreeSet<_> = files
        .iter()
        .flat_map(|f| f.per_hour.keys().copied())
        .collect();

    let found = std::cell::RefCell::new(BTreeMap::<String, usize>::new());
    let rejects = std::cell::Cell::new(0u64);
    let s3 = &ctx.s3;
    let run_tag = format!("demo-{}-", ctx.run);
    let (observed, latency, text) = poll("avro-converter", start, ctx.timeout, || {
        let (expected_keys, found, rejects) = (&expected_keys, &found, &rejects);
        let (out_bucket, error_prefix, run_tag) = (&out_bucket, &error_prefix, &run_tag);
        async move {
            for (key, _) in expected_keys.iter() {
                if found.borrow().contains_key(key) {
                    continue;
                }
                if let Ok(bytes) = get_bytes(s3, out_bucket, key).await {
                    let values = sluice_codec::avro::read_container(&bytes)
                        .map_err(|e| format!("{key}: {e}"))?;
                    found.borrow_mut().insert(key.clone(), values.len());
                }
            }
            let mut lines = 0;
            for object in list(s3, out_bucket, error_prefix).await? {
                let Some(key) = object.key() else { continue };
                if key.contains(run_tag.as_str()) && key.ends_with(".errors.jsonl") {
                    let bytes = get_bytes(s3, out_bucket, key).await?;
                    lines += bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() as u64;
                }
            }
            rejects.set(lines);
            let n: u64 = found.borrow().values().map(|n| *n as u64).sum();
            let done = found.borrow().len() == expected_keys.len() && lines >= expected_rejects;
            Ok((
                n,
                done,
                format!(
                    "{n}/{expected_records} records in {}/{} Avro files, {lines}/{expected_rejects} rejects",
                    found.borrow().len(),
                    expected_keys.len()
                ),
            ))
        }
    })
    .await;
    let files_found = found.borrow().len();
    let wrong: Vec<String> = found
        .borrow()
        .iter()
        .filter(|(k, n)| expected_keys.get(*k) != Some(n))
        .map(|(k, n)| format!("{k}: {n} records, expected {}", expected_keys[k]))
        .collect();
    let ok = latency.is_some()
        && observed == expected_records
        && rejects.get() == expected_rejects
        && wrong.is_empty();
    Ok(vec![Row {
        input: format!(
            "{} snappy JSON files, {records} records ({expected_rejects} invalid)",
            files.len()
        ),
        output: format!(
            "{observed} records in {files_found} Avro files over {} hour partitions; {} rejects",
            hours.len(),
            rejects.get()
        ),
        location: format!(
            "s3://{out_bucket}/{out_prefix}year=…/hour=…/ (rejects s3://{out_bucket}/{error_prefix})"
        ),
        expected: expected_records,
        observed,
        latency_ms: latency,
        ok,
        note: if ok {
            String::new()
        } else if !wrong.is_empty() {
            wrong.join("; ")
        } else {
            text
        },
        ..Row::new("avro-converter")
    }])
}

// --- crash-router ----------------------------------------------------------------

pub async fn crash(ctx: &Ctx) -> Vec<Row> {
    match crash_inner(ctx).await {
        Ok(rows) => rows,
        Err(e) => vec![Row::failed("crash-router", e)],
    }
}

async fn crash_inner(ctx: &Ctx) -> Result<Vec<Row>, String> {
    let bucket = ctx.out("CrashBucketName")?;
    let prefix = ctx.out("CrashRawPrefix")?;
    let processing = ctx.out("CrashProcessingQueueUrl")?.to_owned();
    let submitter = ctx.out("CrashSubmitterQueueUrl")?.to_owned();
    let percent: u64 = ctx
        .out("CrashSubmitterPercent")?
        .parse()
        .map_err(|_| "CrashSubmitterPercent not a number")?;
    let (y, m, d, _) = scenario::hour_of(ctx.now_ms);
    let day = format!("{y:04}{m:02}{d:02}");
    let mut rng = scenario::rng(ctx.seed ^ 0xc4);
    let crashes = scenario::crashes(&mut rng, prefix, &day, ctx.scale.crashes);
    let accepted: BTreeSet<String> = crashes
        .iter()
        .filter(|c| c.kind == CrashKind::Accept)
        .map(|c| c.id.clone())
        .collect();
    let sampled: BTreeSet<String> = accepted
        .iter()
        .filter(|id| scenario::sample_bucket(id) < percent)
        .cloned()
        .collect();
    let all_ids: HashSet<String> = crashes
        .iter()
        .flat_map(|c| [c.id.clone(), c.id.to_lowercase()])
        .collect();
    let deferred = crashes
        .iter()
        .filter(|c| c.kind == CrashKind::Defer)
        .count();
    let malformed = crashes.len() - accepted.len() - deferred;
    progress(
        "crash-router",
        &format!(
            "PUT {} raw crashes ({} accept, {deferred} defer, {malformed} malformed) to s3://{bucket}/{prefix}",
            crashes.len(),
            accepted.len()
        ),
    );
    let start = Instant::now();
    let puts = futures::stream::iter(crashes.iter())
        .map(|c| {
            ctx.s3
                .put_object()
                .bucket(bucket)
                .key(&c.key)
                .body(ByteStream::from_static(
                    b"{\"ProductName\": \"Firefox\", \"Version\": \"148.0\"}",
                ))
                .send()
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    for put in puts {
        put.map_err(err("PutObject"))?;
    }
    let got_processing = std::cell::RefCell::new(Vec::<String>::new());
    let got_submitter = std::cell::RefCell::new(Vec::<String>::new());
    let sqs = &ctx.sqs;
    let (_, latency, text) = poll("crash-router", start, ctx.timeout, || {
        let (gp, gs, all_ids) = (&got_processing, &got_submitter, &all_ids);
        let (processing, submitter, accepted, sampled) =
            (&processing, &submitter, &accepted, &sampled);
        async move {
            let p = take_messages(sqs, processing, |b| all_ids.contains(b)).await?;
            gp.borrow_mut().extend(p);
            if gs.borrow().len() < sampled.len() {
                let s = take_messages(sqs, submitter, |b| all_ids.contains(b)).await?;
                gs.borrow_mut().extend(s);
            }
            let (np, ns) = (gp.borrow().len(), gs.borrow().len());
            let pset: BTreeSet<_> = gp.borrow().iter().cloned().collect();
            let sset: BTreeSet<_> = gs.borrow().iter().cloned().collect();
            let done = pset.is_superset(accepted) && sset.is_superset(sampled);
            Ok((
                np as u64,
                done,
                format!(
                    "processing {np}/{}, submitter {ns}/{}",
                    accepted.len(),
                    sampled.len()
                ),
            ))
        }
    })
    .await;
    // Anything that should not be routed would have arrived with the accepted ids; one
    // more short drain catches stragglers.
    if latency.is_some() {
        let extra = take_messages(sqs, &processing, |b| all_ids.contains(b))
            .await
            .unwrap_or_default();
        got_processing.borrow_mut().extend(extra);
    }
    let gp = got_processing.borrow();
    let gs = got_submitter.borrow();
    let pset: BTreeSet<String> = gp.iter().cloned().collect();
    let sset: BTreeSet<String> = gs.iter().cloned().collect();
    let ok_p = latency.is_some() && pset == accepted;
    let ok_s = latency.is_some() && sset == sampled;
    let not_routed = if pset.is_subset(&accepted) {
        String::new()
    } else {
        "ids that must not be routed were queued".to_owned()
    };
    let duplicates = gp.len() - pset.len();
    Ok(vec![
        Row {
            input: format!(
                "{} raw-crash uploads: {} accept, {deferred} defer, {malformed} malformed",
                crashes.len(),
                accepted.len()
            ),
            output: format!(
                "{} crash ids{}",
                pset.len(),
                if duplicates > 0 {
                    format!(" (+{duplicates} redelivered)")
                } else {
                    String::new()
                }
            ),
            location: format!("SQS {}", queue_name(&processing)),
            expected: accepted.len() as u64,
            observed: pset.len() as u64,
            latency_ms: latency,
            ok: ok_p && not_routed.is_empty(),
            note: if !not_routed.is_empty() {
                not_routed
            } else if ok_p {
                String::new()
            } else {
                text.clone()
            },
            ..Row::new("crash-router")
        },
        Row {
            input: format!("{} accepted ids, {percent}% sampled by id", accepted.len()),
            output: format!("{} crash ids", sset.len()),
            location: format!("SQS {}", queue_name(&submitter)),
            expected: sampled.len() as u64,
            observed: sset.len() as u64,
            latency_ms: latency,
            ok: ok_s,
            note: if ok_s { String::new() } else { text },
            ..Row::new("crash-router (submitter)")
        },
    ])
}

// --- counter-mapper -> counter-aggregator ----------------------------------------

pub async fn counters(ctx: &Ctx) -> Vec<Row> {
    match counters_inner(ctx).await {
        Ok(rows) => rows,
        Err(e) => vec![Row::failed("counter-mapper -> counter-aggregator", e)],
    }
}

async fn counters_inner(ctx: &Ctx) -> Result<Vec<Row>, String> {
    let bucket = ctx.out("CountersBucketName")?;
    let prefix = ctx.out("CounterPrefix")?;
    let instance_table = ctx.out("InstanceTableName")?.to_owned();
    let aggregate_table = ctx.out("AggregateTableName")?.to_owned();
    let mut rng = scenario::rng(ctx.seed ^ 0xc0);
    let data = scenario::counters(&mut rng, ctx.scale.instances, ctx.scale.counters);
    // A date of its own per run (1990-2089), so runs do not see each other's totals.
    let day = time::Date::from_calendar_date(1990, time::Month::January, 1).unwrap()
        + time::Duration::days((ctx.seed % (365 * 100)) as i64);
    let date = format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    );
    progress(
        "counter-mapper",
        &format!(
            "PUT {} counter files ({} counters each) to s3://{bucket}/{prefix}{date}/",
            data.files.len(),
            data.totals.len()
        ),
    );
    let start = Instant::now();
    let puts = futures::stream::iter(data.files.iter())
        .map(|(instance, text)| {
            ctx.s3
                .put_object()
                .bucket(bucket)
                .key(format!("{prefix}{date}/values_{instance}"))
                .body(ByteStream::from(text.clone().into_bytes()))
                .send()
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    for put in puts {
        put.map_err(err("PutObject"))?;
    }
    let expected = data.totals.len() as u64;
    let ddb = &ctx.dynamodb;
    let (observed, latency, text) = poll("counter-aggregator", start, ctx.timeout, || {
        let (aggregate_table, date, totals) = (&aggregate_table, &date, &data.totals);
        async move {
            let got = aggregates(ddb, aggregate_table, date).await?;
            let right = totals
                .iter()
                .filter(|(k, v)| got.get(*k) == Some(v))
                .count() as u64;
            Ok((
                right,
                right == expected,
                format!("{right}/{expected} totals right"),
            ))
        }
    })
    .await;
    // The instance table: every counter holds one entry per instance, over its
    // day's shard items (`Date` = `<day>#<shard>`).
    let mut complete = 0u64;
    for counter in data.totals.keys() {
        let mut entries = 0;
        let mut start = None;
        loop {
            let page = ddb
                .query()
                .table_name(&instance_table)
                .key_condition_expression("#c = :c AND begins_with(#d, :day)")
                .expression_attribute_names("#c", "Counter")
                .expression_attribute_names("#d", "Date")
                .expression_attribute_values(":c", AttributeValue::S(counter.clone()))
                .expression_attribute_values(":day", AttributeValue::S(format!("{date}#")))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(err("Query"))?;
            entries += page
                .items()
                .iter()
                .filter_map(|i| i.get("Instances").and_then(|v| v.as_m().ok()))
                .map(|m| m.len())
                .sum::<usize>();
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
        if entries == data.files.len() {
            complete += 1;
        }
    }
    let values = (data.files.len() * data.totals.len()) as u64;
    let reporter = if ctx.has(&["CounterTotalsBucketName", "CounterAlertQueueUrl"]) {
        Some(reporter_row(ctx, &date, &data.totals, start).await)
    } else {
        None
    };
    let rows = vec![
        Row {
            input: format!(
                "{} counter files × {} counters (+{} malformed line)",
                data.files.len(),
                data.totals.len(),
                data.malformed_lines
            ),
            output: format!(
                "{complete} counters holding all {} instance values in their shard items ({values} values)",
                data.files.len()
            ),
            location: format!("DynamoDB {instance_table} (Date = {date}#<shard>)"),
            expected,
            observed: complete,
            latency_ms: latency,
            ok: complete == expected,
            note: String::new(),
            ..Row::new("counter-mapper")
        },
        Row {
            input: format!("instance-table stream changes for {expected} counters"),
            output: format!("{observed} correct totals"),
            location: format!("DynamoDB {aggregate_table} (index ByDate, Date = {date})"),
            expected,
            observed,
            latency_ms: latency,
            ok: latency.is_some() && observed == expected,
            note: if latency.is_some() {
                String::new()
            } else {
                text
            },
            ..Row::new("counter-aggregator")
        },
    ];
    Ok(rows.into_iter().chain(reporter).collect())
}

/// The counters whose total passes a `max` of the stack's inline limits (output
/// `CounterLimits`; `just demo` deploys `crashes_*` ≤ 100,000). Every scenario value is
/// positive, so such a total crosses its maximum exactly once. Only `max`-only rules are
/// predicted; a counter under a rule with a `min` is left out of the expectation.
fn expected_alerts<'a>(limits: &str, totals: &'a BTreeMap<String, i64>) -> BTreeSet<&'a String> {
    let rules: Vec<serde_json::Value> = serde_json::from_str(limits).unwrap_or_default();
    let rule_for = |counter: &str| {
        let name = |r: &&serde_json::Value| r["counter"].as_str().unwrap_or("").to_owned();
        rules.iter().find(|r| name(r) == counter).or_else(|| {
            rules
                .iter()
                .find(|r| wildmatch::WildMatch::new(&name(r)).matches(counter))
        })
    };
    totals
        .iter()
        .filter(|(c, t)| {
            rule_for(c).is_some_and(|r| {
                r["min"].is_null() && r["max"].as_i64().is_some_and(|max| **t > max)
            })
        })
        .map(|(c, _)| c)
        .collect()
}

/// counter-reporter: the day's snapshot equals the expected totals, and one alert came
/// for every counter whose total passed its maximum ([`expected_alerts`]).
async fn reporter_row(
    ctx: &Ctx,
    date: &str,
    totals: &BTreeMap<String, i64>,
    start: Instant,
) -> Row {
    let inner = async {
        let bucket = ctx.out("CounterTotalsBucketName")?;
        let key = format!("{}{date}/totals.jsonl", ctx.out("CounterTotalsPrefix")?);
        let queue = ctx.out("CounterAlertQueueUrl")?.to_owned();
        let limits = ctx
            .outputs
            .get("CounterLimits")
            .map_or("none", String::as_str);
        let want_alerts = expected_alerts(limits, totals);
        let expected = (totals.len() + want_alerts.len()) as u64;
        let alerts = std::sync::Mutex::new(Vec::<serde_json::Value>::new());
        let (observed, latency, text) = poll("counter-reporter", start, ctx.timeout, || {
            let (key, queue, alerts, want_alerts) = (&key, &queue, &alerts, &want_alerts);
            async move {
                let body = get_bytes(&ctx.s3, bucket, key).await?;
                let lines: BTreeMap<String, i64> = String::from_utf8_lossy(&body)
                    .lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .filter_map(|l| Some((l["counter"].as_str()?.to_owned(), l["total"].as_i64()?)))
                    .collect();
                let right = totals
                    .iter()
                    .filter(|(c, t)| lines.get(*c) == Some(t))
                    .count();
                let mine = take_messages(&ctx.sqs, queue, |b| {
                    b.contains(&format!("\"date\":\"{date}\""))
                })
                .await?;
                let mut got = alerts.lock().unwrap();
                got.extend(mine.iter().filter_map(|b| serde_json::from_str(b).ok()));
                let alerted: BTreeSet<&str> =
                    got.iter().filter_map(|a| a["counter"].as_str()).collect();
                let alerts_right = want_alerts
                    .iter()
                    .filter(|c| alerted.contains(c.as_str()))
                    .count();
                let done = right == totals.len()
                    && lines.len() == totals.len()
                    && alerts_right == want_alerts.len();
                Ok((
                    (right + alerts_right) as u64,
                    done,
                    format!(
                        "{right}/{} totals in the snapshot, {}/{} alerts",
                        totals.len(),
                        got.len(),
                        want_alerts.len()
                    ),
                ))
            }
        })
        .await;
        // A late duplicate would show here: wait a little, then count every alert of the day.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let late = take_messages(&ctx.sqs, &queue, |b| {
            b.contains(&format!("\"date\":\"{date}\""))
        })
        .await?;
        let got = {
            let mut got = alerts.lock().unwrap();
            got.extend(late.iter().filter_map(|b| serde_json::from_str(b).ok()));
            got.clone()
        };
        let once = got.len() == want_alerts.len();
        let alerted: Vec<String> = got
            .iter()
            .map(|a| {
                format!(
                    "{} {} (total {})",
                    a["counter"].as_str().unwrap_or("?"),
                    a["standing"].as_str().unwrap_or("?"),
                    a["total"]
                )
            })
            .collect();
        Ok::<Row, String>(Row {
            input: format!(
                "aggregate-table stream changes for {} counters; limits {limits}",
                totals.len()
            ),
            output: format!(
                "{} totals in the day's snapshot; {} limit alert(s): {}",
                totals.len(),
                got.len(),
                alerted.join(", ")
            ),
            location: format!("s3://{bucket}/{key}; alerts on CounterAlertQueueUrl"),
            expected,
            observed,
            latency_ms: latency,
            ok: latency.is_some() && observed == expected && once,
            note: if latency.is_none() {
                text
            } else if !once {
                format!("{} alerts for {} crossings", got.len(), want_alerts.len())
            } else {
                String::new()
            },
            ..Row::new("counter-reporter")
        })
    };
    inner
        .await
        .unwrap_or_else(|e| Row::failed("counter-reporter", e))
}

async fn aggregates(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    date: &str,
) -> Result<HashMap<String, i64>, String> {
    let mut out = HashMap::new();
    let mut start_key = None;
    loop {
        let page = ddb
            .query()
            .table_name(table)
            .index_name("ByDate")
            .key_condition_expression("#d = :d")
            .expression_attribute_names("#d", "Date")
            .expression_attribute_values(":d", AttributeValue::S(date.to_owned()))
            .set_exclusive_start_key(start_key)
            .send()
            .await
            .map_err(err("Query"))?;
        for item in page.items() {
            let counter = item.get("Counter").and_then(|v| v.as_s().ok());
            let value = item
                .get("Value")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok());
            if let (Some(c), Some(v)) = (counter, value) {
                out.insert(c.clone(), v);
            }
        }
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start_key = Some(k.clone()),
            _ => return Ok(out),
        }
    }
}

// --- job-poller ------------------------------------------------------------------

pub async fn job(ctx: &Ctx) -> Vec<Row> {
    match job_inner(ctx).await {
        Ok(rows) => rows,
        Err(e) => vec![Row::failed("job-poller", e)],
    }
}

async fn job_inner(ctx: &Ctx) -> Result<Vec<Row>, String> {
    let base = ctx.out("JobApiBaseUrl")?;
    let addr = base
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|a| a.starts_with("127.0.0.1:") || a.starts_with("localhost:"))
        .ok_or_else(|| {
            format!("JobApiBaseUrl {base} is not a loopback http URL the demo can serve")
        })?
        .replace("localhost:", "127.0.0.1:");
    let secret = ctx
        .secrets
        .get_secret_value()
        .secret_id(ctx.out("JobApiTokenSecretArn")?)
        .send()
        .await
        .map_err(err("GetSecretValue"))?
        .secret_string()
        .unwrap_or_default()
        .to_owned();
    let api = FakeJobApi::start(&addr, &secret, Duration::from_secs(3))
        .map_err(|e| format!("fake job API on {addr}: {e} (is another demo running?)"))?;
    let bucket = ctx.out("JobReportsBucketName")?;
    let key = format!("{}demo-{}.csv", ctx.out("JobReportPrefix")?, ctx.run);
    let queue = ctx.out("JobOutcomeQueueUrl")?.to_owned();
    progress(
        "job-poller",
        &format!("fake job API on http://{addr}; PUT s3://{bucket}/{key}"),
    );
    let start = Instant::now();
    let mut report = String::from("region,day,revenue_cents\n");
    for (i, region) in ["EU", "NA", "APAC", "LATAM"].iter().enumerate() {
        report.push_str(&format!("{region},{},{}\n", ctx.run, 100_000 + i * 7_919));
    }
    ctx.s3
        .put_object()
        .bucket(bucket)
        .key(&key)
        .body(ByteStream::from(report.into_bytes()))
        .send()
        .await
        .map_err(err("PutObject"))?;
    let outcome = std::cell::RefCell::new(None::<serde_json::Value>);
    let sqs = &ctx.sqs;
    let (_, latency, text) = poll(
        "job-poller",
        start,
        ctx.timeout.max(Duration::from_secs(60)),
        || {
            let (queue, key, outcome, api) = (&queue, &key, &outcome, &api);
            async move {
                let is_mine = |body: &str| {
                    serde_json::from_str::<serde_json::Value>(body)
                        .is_ok_and(|v| v["source"]["key"].as_str() == Some(key.as_str()))
                };
                if let Some(body) = take_messages(sqs, queue, is_mine).await?.into_iter().next() {
                    *outcome.borrow_mut() = serde_json::from_str(&body).ok();
                }
                let got = outcome.borrow().is_some();
                Ok((
                    u64::from(got),
                    got,
                    format!(
                        "{} polls of the job API, no notification yet",
                        api.stats().polls
                    ),
                ))
            }
        },
    )
    .await;
    let stats = api.stats();
    let outcome = outcome.into_inner();
    let status = outcome
        .as_ref()
        .and_then(|o| o["outcome"].as_str())
        .unwrap_or("none")
        .to_owned();
    let generations = outcome
        .as_ref()
        .and_then(|o| o["generations"].as_u64())
        .unwrap_or(0);
    let ok = status == "SUCCEEDED" && stats.jobs == 1;
    Ok(vec![Row {
        input: format!("1 report (s3://{bucket}/{key})"),
        output: format!(
            "job {status} after {} polls, {generations} generation(s), {} job(s) from {} start call(s), {} refused",
            stats.polls, stats.jobs, stats.starts, stats.refused
        ),
        location: format!(
            "SNS -> SQS {} (jobs table {})",
            queue_name(&queue),
            ctx.out("JobsTableName")?
        ),
        expected: 1,
        observed: u64::from(status == "SUCCEEDED"),
        latency_ms: latency,
        ok,
        note: if ok {
            String::new()
        } else if latency.is_none() {
            text
        } else {
            format!("outcome {status}, {} jobs started", stats.jobs)
        },
        ..Row::new("job-poller")
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_are_expected_for_totals_above_a_max_only() {
        let totals: BTreeMap<String, i64> = [
            ("crashes_05", 150_000),
            ("crashes_13", 90_000),
            ("sessions_04", 1_000_000),
            ("coins_spent_03", 5),
        ]
        .into_iter()
        .map(|(c, t)| (c.to_owned(), t))
        .collect();
        let limits = r#"[{"counter":"coins_spent_03","min":10,"max":20},{"counter":"crashes_*","max":100000}]"#;
        let want: Vec<&str> = expected_alerts(limits, &totals)
            .into_iter()
            .map(String::as_str)
            .collect();
        assert_eq!(want, vec!["crashes_05"]);
        assert!(expected_alerts("none", &totals).is_empty());
    }
}
