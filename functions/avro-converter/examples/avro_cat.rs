//! Prints the records of Avro container files as JSON lines, read with apache-avro (an
//! independent reader of what the converter writes; the end-to-end test compares its output
//! with fastavro's). Usage: `avro_cat FILE...`

use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for path in std::env::args().skip(1) {
        let bytes = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
        for record in
            sluice_codec::avro::read_container(&bytes).map_err(|e| format!("{path}: {e}"))?
        {
            let json = serde_json::Value::try_from(record).map_err(|e| format!("{path}: {e}"))?;
            serde_json::to_writer(&mut out, &json)?;
            out.write_all(b"\n")?;
        }
    }
    Ok(())
}
