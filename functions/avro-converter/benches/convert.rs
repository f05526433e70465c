//! Criterion bench of the conversion's pure path (placeholder until written).
fn main() {}
