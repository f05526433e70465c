//! Generated, realistic player events (deterministic, no randomness source needed) for tests,
//! the bench and the memory measurement example. Not used by the handler.

use serde_json::{Value, json};

const EVENT_TYPES: &[&str] = &[
    "heartbeat",
    "heartbeat",
    "heartbeat",
    "play",
    "pause",
    "seek",
    "buffer_start",
    "buffer_end",
    "bitrate_change",
    "error",
];
const PLATFORMS: &[(&str, &str, &str)] = &[
    ("web", "shaka", "4.7.11"),
    ("android", "exoplayer", "2.19.1"),
    ("ios", "avplayer", "17.4"),
    ("androidtv", "exoplayer", "2.19.1"),
    ("roku", "roku-video", "12.5"),
];
const RESOLUTIONS: &[(&str, i64)] = &[
    ("640x360", 800),
    ("1280x720", 2_500),
    ("1920x1080", 5_000),
    ("3840x2160", 15_000),
];
const CDNS: &[&str] = &["cloudfront", "akamai", "fastly"];
const COUNTRIES: &[&str] = &["GB", "DE", "US", "FR", "NL", "SE", "ES", "IT"];

/// A small deterministic mixer (SplitMix64), so generated data needs no RNG crate.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn pick<T: Copy>(items: &[T], seed: u64) -> T {
    items[(seed % items.len() as u64) as usize]
}

/// Player event number `i`, with `PTS` = `start_ms + i * step_ms`. Every field of the
/// built-in schema appears in some events; optional ones are sometimes absent or null.
pub fn player_event(i: u64, start_ms: i64, step_ms: i64) -> Value {
    let r = mix(i);
    let session = i / 40;
    let (platform, player, player_version) = pick(PLATFORMS, mix(session));
    let (resolution, bitrate) = pick(RESOLUTIONS, r >> 8);
    let event_type = pick(EVENT_TYPES, r >> 16);
    let mut event = json!({
        "PTS": start_ms + i as i64 * step_ms,
        "event_id": format!("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", r >> 32, (r >> 16) & 0xffff, r & 0xfff, (r >> 12) & 0xfff, mix(r) & 0xffff_ffff_ffff),
        "event_type": event_type,
        "session_id": format!("s-{:016x}", mix(session ^ 0x5e55)),
        "content_id": format!("title-{:05}", mix(session) % 20_000),
        "user_id": if r.is_multiple_of(5) { Value::Null } else { json!(format!("u-{:08}", mix(session) % 1_000_000)) },
        "device_id": format!("d-{:012x}", mix(session ^ 0xd) & 0xffff_ffff_ffff),
        "content_type": if session.is_multiple_of(7) { "live" } else { "vod" },
        "position_ms": (i % 40) as i64 * 10_000 + (r % 1000) as i64,
        "bitrate_kbps": bitrate,
        "resolution": resolution,
        "buffer_ms": (r >> 20) % 30_000,
        "dropped_frames": (r >> 24) % 5,
        "volume": ((r >> 28) % 101) as f64 / 100.0,
        "muted": (r >> 32).is_multiple_of(10),
        "fullscreen": (r >> 33).is_multiple_of(3),
        "cdn": pick(CDNS, r >> 36),
        "country": pick(COUNTRIES, mix(session) >> 3),
        "player": { "name": player, "version": player_version },
        "device": {
            "platform": platform,
            "os_version": format!("{}.{}", 10 + (mix(session) % 8), mix(session) % 4),
            "model": format!("model-{}", mix(session) % 50),
            "app_version": "5.12.0"
        },
        "experiments": ["abr-v2", format!("ui-{}", session % 3)],
        "custom": { "page": "watch", "autoplay": if r.is_multiple_of(2) { "true" } else { "false" } }
    });
    let fields = event.as_object_mut().expect("object");
    if !session.is_multiple_of(7) {
        fields.insert(
            "duration_ms".into(),
            json!(2_700_000 + (mix(session) % 3_600_000) as i64),
        );
    }
    if event_type == "buffer_end" {
        fields.insert("rebuffer_ms".into(), json!((r >> 40) % 5_000));
    }
    if event_type == "error" {
        fields.insert("error_code".into(), json!("MEDIA_ERR_NETWORK"));
        fields.insert(
            "error_message".into(),
            json!("segment request failed: HTTP 503"),
        );
    }
    // Not every player reports everything: keeps the average event near 500 bytes of JSON.
    if !(r >> 44).is_multiple_of(3) {
        fields.remove("experiments");
    }
    if !(r >> 46).is_multiple_of(4) {
        fields.remove("custom");
    }
    if !matches!(event_type, "play" | "pause" | "heartbeat") {
        for field in ["volume", "muted", "fullscreen"] {
            fields.remove(field);
        }
    }
    if event_type != "heartbeat" {
        fields.remove("dropped_frames");
    }
    event
}

/// `n` events as NDJSON, one line each, starting at `start_ms`, `step_ms` apart.
pub fn ndjson(n: u64, start_ms: i64, step_ms: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n as usize * 700);
    for i in 0..n {
        serde_json::to_writer(&mut out, &player_event(i, start_ms, step_ms)).expect("serialises");
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::RecordSchema;

    #[test]
    fn generated_events_fit_the_built_in_schema() {
        let schema = RecordSchema::player_event();
        for i in 0..500 {
            let event = player_event(i, 1_715_677_200_000, 1_000);
            schema
                .plan
                .coerce(&event)
                .unwrap_or_else(|e| panic!("event {i}: {e}\n{event}"));
        }
    }

    #[test]
    fn events_are_about_half_a_kilobyte_of_json_so_100k_make_50_mb() {
        let text = ndjson(10_000, 0, 1);
        let per_event = text.len() / 10_000;
        assert!(
            (450..=560).contains(&per_event),
            "{per_event} bytes per event"
        );
    }
}
