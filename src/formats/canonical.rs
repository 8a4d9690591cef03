//! The canonical record shape (SPEC: "The canonical request record") and feedback records.
//! Unknown fields are kept in `metadata` as strings, never an error.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::{opt_str, req_str, stringify, value_ts_ms};
use crate::record::fields::{self, Kind, Text};
use crate::record::{Feedback, FeedbackRef, Item, Record, RecordRef};

/// Keys of the canonical shape that are not fields: the partition columns of a stored record
/// read back, ignored.
const IGNORED: &[&str] = &["date", "hour"];

/// The general path's field reads, from the field list: lenient (numbers as strings, ...),
/// each error naming its field.
macro_rules! take_fields {
    ($($(#[$doc:meta])* $f:ident $json:literal $kind:ident,)*) => {
        fn take_fields(obj: &mut Map<String, Value>) -> Result<Record, String> {
            Ok(Record {
                $($f: <fields::$kind as Kind>::take(obj, $json)?,)*
                metadata: BTreeMap::new(),
            })
        }
    };
}
crate::record::request_fields!(take_fields);

/// A canonical request record.
pub fn record(mut obj: Map<String, Value>) -> Result<Item, String> {
    let mut r = take_fields(&mut obj)?;
    // A stored record read back says `cost_source: unknown` with a null cost: keep it so.
    if r.cost_usd.is_some() {
        r.cost_source = None;
    }
    match obj.remove("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                r.metadata.insert(k, stringify(&v));
            }
        }
        Some(v) => {
            return Err(format!(
                "`metadata` must be an object of strings, got {}",
                super::json_kind(&v)
            ));
        }
    }
    for (k, v) in obj {
        if !IGNORED.contains(&k.as_str()) && !v.is_null() {
            r.metadata.entry(k).or_insert_with(|| stringify(&v));
        }
    }
    Ok(Item::Request(Box::new(r)))
}

/// A feedback record `{request_id, ts?, metric = "quality", value, source?}`.
pub fn feedback(obj: Map<String, Value>, now_us: i64) -> Result<Item, String> {
    let ts_us = value_ts_ms(obj.get("ts"), "ts")?;
    let value = match obj.get("value") {
        Some(Value::Bool(b)) => f64::from(u8::from(*b)),
        v => super::value_f64(v, "value")?.ok_or("`value` is required")?,
    };
    Ok(Item::Feedback(Feedback {
        request_id: req_str(&obj, "request_id")?,
        ts_us: ts_us.unwrap_or(now_us),
        metric: opt_str(&obj, "metric")?.unwrap_or_else(|| "quality".into()),
        value,
        source: opt_str(&obj, "source")?,
    }))
}

/// Why the fast path gave a record up (never shown: the general path names the problem).
fn give_up<E: de::Error>() -> E {
    E::custom("not for the fast path")
}

/// `metadata` as the fast path takes it: an object of strings.
struct Meta<'a>(BTreeMap<Cow<'a, str>, Cow<'a, str>>);

impl<'de> de::Deserialize<'de> for Meta<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Meta<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Meta<'de>, A::Error> {
                let mut m = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<Text<'de>, Text<'de>>()? {
                    m.insert(k.0, v.0);
                }
                Ok(Meta(m))
            }
        }
        d.deserialize_map(V)
    }
}

/// The fast path's parser, from the field list: a strict, borrowing read of one object with
/// no intermediate JSON tree.
macro_rules! fast_fields {
    ($($(#[$doc:meta])* $f:ident $json:literal $kind:ident,)*) => {
        struct FastRecord;

        impl<'de> Visitor<'de> for FastRecord {
            type Value = RecordRef<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a canonical record")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RecordRef<'de>, A::Error> {
                $(let mut $f: Option<<fields::$kind as Kind>::Ref<'de>> = None;)*
                let mut metadata: Option<Meta<'de>> = None;
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    match key.0.as_ref() {
                        $($json => {
                            if $f.is_some() {
                                return Err(give_up());
                            }
                            $f = Some(<fields::$kind as Kind>::parse(&mut map)?);
                        })*
                        "metadata" => {
                            if metadata.is_some() {
                                return Err(give_up());
                            }
                            metadata = Some(
                                map.next_value::<Option<Meta<'de>>>()?
                                    .unwrap_or(Meta(BTreeMap::new())),
                            );
                        }
                        k if IGNORED.contains(&k) => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        _ => return Err(give_up()),
                    }
                }
                Ok(RecordRef {
                    $($f: match $f {
                        Some(v) => v,
                        None => <fields::$kind as Kind>::missing().ok_or_else(give_up)?,
                    },)*
                    metadata: metadata.map(|m| m.0).unwrap_or_default(),
                })
            }
        }
    };
}
crate::record::request_fields!(fast_fields);

/// The fast path for canonical records: a typed, borrowing parse with no intermediate JSON
/// tree. Any surprise (an unknown field, a number as a string, a missing `ts`) returns `None`
/// and the caller takes the general path, which keeps unknown fields and names errors.
pub fn fast_record(line: &[u8]) -> Option<RecordRef<'_>> {
    let mut de = serde_json::Deserializer::from_slice(line);
    let mut r = de::Deserializer::deserialize_map(&mut de, FastRecord).ok()?;
    de.end().ok()?;
    if r.cost_usd.is_some() {
        r.cost_source = None;
    }
    Some(r)
}

/// The fast path for feedback records, like [`fast_record`]: `None` sends the line to the
/// general path.
pub fn fast_feedback(line: &[u8], now_us: i64) -> Option<FeedbackRef<'_>> {
    use serde::Deserialize;
    use serde_json::value::RawValue;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Fast<'a> {
        #[serde(borrow)]
        request_id: Cow<'a, str>,
        #[serde(borrow, default)]
        ts: Option<&'a RawValue>,
        #[serde(borrow, default)]
        metric: Option<Cow<'a, str>>,
        value: f64,
        #[serde(borrow, default)]
        source: Option<Cow<'a, str>>,
    }

    let f: Fast = serde_json::from_slice(line).ok()?;
    let ts_us = match f.ts {
        None => now_us,
        Some(t) if t.get() == "null" => now_us,
        Some(t) => fields::raw_ts(t)?,
    };
    Some(FeedbackRef {
        request_id: f.request_id,
        ts_us,
        metric: f.metric.unwrap_or(Cow::Borrowed("quality")),
        value: f.value,
        source: f.source,
    })
}
