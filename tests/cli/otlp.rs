//! What the tests that send production traffic share: OTLP attribute values and the ids of
//! spans and traces as runner stores them (lower-case hex; every trace id ends in 7).

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

/// A string attribute.
pub fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// An integer attribute.
pub fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// A span id as stored.
pub fn span_hex(id: u64) -> String {
    format!("{id:016x}")
}

/// The id of trace `trace` as stored (the tests' span builders end every trace id in 7).
pub fn trace_hex(trace: u64) -> String {
    format!("{trace:016x}{:016x}", 7)
}
