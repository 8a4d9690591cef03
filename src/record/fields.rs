//! The kinds of canonical-record fields. Each kind says, once, what a field of that kind is:
//! its Rust types (owned, and borrowed from the input), its Arrow column, how it is read from
//! JSON (strictly, borrowing, for the fast path; leniently, from a parsed object, for the
//! general path), how it is validated, appended to a column and read back from one. The field
//! list itself (`request_fields!` in `record.rs`) pairs each field's name with its kind; the
//! record types, the schema, both parsers, the column builders and the round trip are derived
//! from that list.

use std::borrow::Cow;
use std::fmt;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Decimal128Builder, Float64Builder, Int32Builder,
    Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{
    DataType, Decimal128Type, Float64Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType,
};
use rust_decimal::Decimal;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{COST_SCALE, CostSource, MAX_TS_US, MIN_TS_US};
use crate::formats::{
    opt_bool, opt_f64, opt_i32, opt_i64, parse_ts_str, take_str, value_decimal, value_ts_ms,
};

/// Precision of `cost_usd`: DECIMAL(18, 12) fits a Parquet INT64 and up to 999,999 USD.
pub const COST_PRECISION: u8 = 18;

/// Longest accepted text field, in bytes (`request_id` has its own, shorter bound).
pub const MAX_TEXT_BYTES: usize = 4096;
/// Longest accepted `request_id`, in bytes.
pub const MAX_ID_BYTES: usize = 512;
/// Largest plausible token count.
pub const MAX_TOKENS: i64 = 100_000_000_000;

/// The `TIMESTAMP(µs, UTC)` type of `ts` columns.
pub fn utc_ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// One kind of field. `Ref<'a>` borrows from the input where the input allows it.
pub trait Kind {
    type Owned: Clone + Default + fmt::Debug + PartialEq;
    type Ref<'a>;
    type Builder;
    /// Whether the stored column may hold nulls.
    const NULLABLE: bool;
    fn data_type() -> DataType;
    fn builder(rows: usize) -> Self::Builder;
    fn append(b: &mut Self::Builder, v: &Self::Ref<'_>);
    fn finish(b: &mut Self::Builder) -> ArrayRef;
    /// Moves an owned value into the borrowed shape (no copy).
    fn lift(v: Self::Owned) -> Self::Ref<'static>;
    /// Borrows an owned value.
    fn borrow(v: &Self::Owned) -> Self::Ref<'_>;
    /// The value of an absent field; `None` when the field is required.
    fn missing<'a>() -> Option<Self::Ref<'a>>;
    fn own(v: Self::Ref<'_>) -> Self::Owned;
    /// Row `i` of a stored column.
    fn read(a: &dyn Array, i: usize) -> Self::Owned;
    /// Bounds of the kind; the error names the field.
    fn check(name: &str, v: &Self::Ref<'_>) -> Result<(), String>;
    /// Strict, borrowing read of the field's JSON value (the fast path: any surprise is an
    /// error and the record goes to the general path, which names it).
    fn parse<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Self::Ref<'de>, A::Error>;
    /// Lenient read from a parsed object (numbers as strings and the like), removing the key.
    fn take(obj: &mut Map<String, Value>, key: &str) -> Result<Self::Owned, String>;
}

/// A string that borrows from the input unless it holds escapes.
pub struct Text<'a>(pub Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

fn text_column(a: &dyn Array) -> &arrow::array::StringArray {
    a.as_string::<i32>()
}

fn read_opt_text(a: &dyn Array, i: usize) -> Option<String> {
    (!a.is_null(i)).then(|| text_column(a).value(i).to_string())
}

fn check_len(name: &str, s: &str, max: usize) -> Result<(), String> {
    if s.len() > max {
        return Err(format!("`{name}` is longer than {max} bytes"));
    }
    Ok(())
}

fn required(v: Option<String>, key: &str) -> Result<String, String> {
    v.filter(|s| !s.is_empty())
        .ok_or_else(|| format!("`{key}` is required"))
}

/// A required identifier (`request_id`): non-empty, at most [`MAX_ID_BYTES`].
pub struct Id;
/// A required name (`model`): non-empty, at most [`MAX_TEXT_BYTES`].
pub struct Name;

macro_rules! required_text {
    ($kind:ident, $max:expr) => {
        impl Kind for $kind {
            type Owned = String;
            type Ref<'a> = Cow<'a, str>;
            type Builder = StringBuilder;
            const NULLABLE: bool = false;
            fn data_type() -> DataType {
                DataType::Utf8
            }
            fn builder(rows: usize) -> StringBuilder {
                StringBuilder::with_capacity(rows, rows * 24)
            }
            fn append(b: &mut StringBuilder, v: &Cow<'_, str>) {
                b.append_value(v);
            }
            fn finish(b: &mut StringBuilder) -> ArrayRef {
                std::sync::Arc::new(b.finish())
            }
            fn lift(v: String) -> Cow<'static, str> {
                Cow::Owned(v)
            }
            fn borrow(v: &String) -> Cow<'_, str> {
                Cow::Borrowed(v)
            }
            fn missing<'a>() -> Option<Cow<'a, str>> {
                None
            }
            fn own(v: Cow<'_, str>) -> String {
                v.into_owned()
            }
            fn read(a: &dyn Array, i: usize) -> String {
                text_column(a).value(i).to_string()
            }
            fn check(name: &str, v: &Cow<'_, str>) -> Result<(), String> {
                if v.trim().is_empty() {
                    return Err(format!(
                        "`{name}` is required and must be a non-empty string"
                    ));
                }
                check_len(name, v, $max)
            }
            fn parse<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Cow<'de, str>, A::Error> {
                Ok(map.next_value::<Text<'de>>()?.0)
            }
            fn take(obj: &mut Map<String, Value>, key: &str) -> Result<String, String> {
                required(take_str(obj, key)?, key)
            }
        }
    };
}
required_text!(Id, MAX_ID_BYTES);
required_text!(Name, MAX_TEXT_BYTES);

/// An optional string field; `BOUNDED` ones are at most [`MAX_TEXT_BYTES`]; `DEFAULTED` ones
/// are stored as [`DEFAULT_TASK`] when absent, so their column holds no nulls.
pub struct OptText<const BOUNDED: bool, const DEFAULTED: bool = false>;
/// `task`: optional in the input, `default` when absent.
pub type Task = OptText<true, true>;
/// The task of records that name none.
pub const DEFAULT_TASK: &str = "default";
/// An optional text field of at most [`MAX_TEXT_BYTES`].
pub type Label = OptText<true>;
/// An optional text field without a length bound (`error`: upstream messages as they came).
pub type Message = OptText<false>;

impl<const BOUNDED: bool, const DEFAULTED: bool> Kind for OptText<BOUNDED, DEFAULTED> {
    type Owned = Option<String>;
    type Ref<'a> = Option<Cow<'a, str>>;
    type Builder = StringBuilder;
    const NULLABLE: bool = !DEFAULTED;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn builder(rows: usize) -> StringBuilder {
        StringBuilder::with_capacity(rows, rows * 8)
    }
    fn append(b: &mut StringBuilder, v: &Option<Cow<'_, str>>) {
        match v.as_deref() {
            None if DEFAULTED => b.append_value(DEFAULT_TASK),
            v => b.append_option(v),
        }
    }
    fn finish(b: &mut StringBuilder) -> ArrayRef {
        std::sync::Arc::new(b.finish())
    }
    fn lift(v: Option<String>) -> Option<Cow<'static, str>> {
        v.map(Cow::Owned)
    }
    fn borrow(v: &Option<String>) -> Option<Cow<'_, str>> {
        v.as_deref().map(Cow::Borrowed)
    }
    fn missing<'a>() -> Option<Option<Cow<'a, str>>> {
        Some(None)
    }
    fn own(v: Option<Cow<'_, str>>) -> Option<String> {
        v.map(Cow::into_owned)
    }
    fn read(a: &dyn Array, i: usize) -> Option<String> {
        read_opt_text(a, i)
    }
    fn check(name: &str, v: &Option<Cow<'_, str>>) -> Result<(), String> {
        match v {
            Some(s) if BOUNDED => check_len(name, s, MAX_TEXT_BYTES),
            _ => Ok(()),
        }
    }
    fn parse<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Cow<'de, str>>, A::Error> {
        Ok(map.next_value::<Option<Text<'de>>>()?.map(|t| t.0))
    }
    fn take(obj: &mut Map<String, Value>, key: &str) -> Result<Option<String>, String> {
        take_str(obj, key)
    }
}

/// The request start (`ts`): RFC 3339 or epoch milliseconds in, UTC microseconds stored.
pub struct Ts;

/// Microseconds of a `ts` JSON value as the fast path takes it: a string without escapes, or
/// epoch milliseconds.
pub fn raw_ts(raw: &RawValue) -> Option<i64> {
    let t = raw.get();
    match t.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(s) if !s.contains('\\') => parse_ts_str(s),
        Some(_) => None,
        None => Some((t.parse::<f64>().ok()? * 1000.0).round() as i64),
    }
}

impl Kind for Ts {
    type Owned = i64;
    type Ref<'a> = i64;
    type Builder = TimestampMicrosecondBuilder;
    const NULLABLE: bool = false;
    fn data_type() -> DataType {
        utc_ts()
    }
    fn builder(rows: usize) -> TimestampMicrosecondBuilder {
        TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC")
    }
    fn append(b: &mut TimestampMicrosecondBuilder, v: &i64) {
        b.append_value(*v);
    }
    fn finish(b: &mut TimestampMicrosecondBuilder) -> ArrayRef {
        std::sync::Arc::new(b.finish())
    }
    fn lift(v: i64) -> i64 {
        v
    }
    fn borrow(v: &i64) -> i64 {
        *v
    }
    fn missing<'a>() -> Option<Self::Ref<'a>> {
        None
    }
    fn own(v: i64) -> i64 {
        v
    }
    fn read(a: &dyn Array, i: usize) -> i64 {
        a.as_primitive::<TimestampMicrosecondType>().value(i)
    }
    fn check(_: &str, v: &i64) -> Result<(), String> {
        if !(MIN_TS_US..MAX_TS_US).contains(v) {
            return Err(format!(
                "`ts` is out of range (years 1990 to 2199): {v} µs since the epoch"
            ));
        }
        Ok(())
    }
    fn parse<'de, A: MapAccess<'de>>(map: &mut A) -> Result<i64, A::Error> {
        let raw = map.next_value::<&'de RawValue>()?;
        raw_ts(raw).ok_or_else(|| de::Error::custom("`ts` takes the general path"))
    }
    fn take(obj: &mut Map<String, Value>, key: &str) -> Result<i64, String> {
        let v = obj.remove(key);
        value_ts_ms(v.as_ref(), key)?.ok_or_else(|| format!("`{key}` is required"))
    }
}

/// The items of a kind whose value is an optional `Copy` scalar, the same owned and borrowed,
/// stored in a nullable column of builder `$b`.
macro_rules! optional_scalar {
    ($t:ty, $b:ty) => {
        type Owned = Option<$t>;
        type Ref<'a> = Option<$t>;
        type Builder = $b;
        const NULLABLE: bool = true;
        fn builder(rows: usize) -> $b {
            <$b>::with_capacity(rows)
        }
        fn append(b: &mut $b, v: &Option<$t>) {
            b.append_option(*v);
        }
        fn finish(b: &mut $b) -> ArrayRef {
            std::sync::Arc::new(b.finish())
        }
        fn lift(v: Option<$t>) -> Option<$t> {
            v
        }
        fn borrow(v: &Option<$t>) -> Option<$t> {
            *v
        }
        fn missing<'a>() -> Option<Self::Ref<'a>> {
            Some(None)
        }
        fn own(v: Option<$t>) -> Option<$t> {
            v
        }
    };
}

/// A token count: a whole number in `0..=MAX_TOKENS`.
pub struct Count;

impl Kind for Count {
    optional_scalar!(i64, Int64Builder);
    fn data_type() -> DataType {
        DataType::Int64
    }
    fn read(a: &dyn Array, i: usize) -> Option<i64> {
        (!a.is_null(i)).then(|| a.as_primitive::<Int64Type>().value(i))
    }
    fn check(name: &str, v: &Option<i64>) -> Result<(), String> {
        match *v {
            Some(n) if n < 0 => Err(format!("`{name}` must be >= 0, got {n}")),
            Some(n) if n > MAX_TOKENS => Err(format!("`{name}` is implausibly large: {n}")),
            _ => Ok(()),
        }
    }
    fn parse<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<i64>, A::Error> {
        map.next_value()
    }
    fn take(obj: &mut Map<String, Value>, key: &str) -> Result<Option<i64>, String> {
        let v = opt_i64(obj, key);
        obj.remove(key);
        v
    }
}

/// `cost_usd`: exact decimal money, `DECIMAL(18, 12)`; bounded by `record::bound_cost` when
/// the record is finished (reported or priced alike).
pub struct Cost;

/// The exact decimal of a JSON number or numeric string, as the fast path reads it: a number
/// reads as the general path reads it (through `f64`, shortest form), a string keeps its digits.
pub fn raw_decimal(raw: &RawValue) -> Option<Option<Decimal>> {
    let t = raw.get();
    if t == "null" {
        return Some(None);
    }
    let text = match t.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(
            serde_json::from_str::<serde_json::Number>(t)
                .ok()?
                .to_string(),
        ),
    };
    Decimal::from_str_exact(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .ok()
        .map(Some)
}

/// The stored integer (units of 10^-12 USD) of a cost.
pub fn decimal_units(d: Decimal) -> i128 {
    let mut d = d;
    d.rescale(COST_SCALE);
    d.mantissa()
}

impl Kind for Cost {
    type Owned = Option<Decimal>;
    type Ref<'a> = Option<Decimal>;
    type Builder = Decimal128Builder;
    const NULLABLE: bool = true;
    fn data_type() -> DataType {
        DataType::Decimal128(COST_PRECISION, COST_SCALE as i8)
    }
    fn builder(rows: usize) -> Decimal128Builder {
        Decimal128Builder::with_capacity(rows).with_data_type(Self::data_type())
    }
    fn append(b: &mut Decimal128Builder, v: &Option<Decimal>) {
        b.append_option(v.map(decimal_units));
    }
    fn finish(b: &mut Decimal128Builder) -> ArrayRef {
        std::sync::Arc::new(b.finish())
    }
    fn lift(v: Option<Decimal>) -> Option<Decimal> {
        v
    }
    fn borrow(v: &Option<Decimal>) -> Option<Decimal> {
        *v
    }
    fn missing<'a>() -> Option<Self::Ref<'a>> {
        Some(None)
    }
    fn own(v: Option<Decimal>) -> Option<Decimal> {
        v
    }
    fn read(a: &dyn Array, i: usize) -> Option<Decimal> {
        (!a.is_null(i)).then(|| {
            Decimal::from_i128_with_scale(a.as_primitive::<Decimal128Type>().value(i), COST_SCALE)
        })
    }
    fn check(_: &str, _: &Option<Decimal>) -> Result<(), String> {
        Ok(())
    }
    fn parse<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Decimal>, A::Error> {
        let raw = map.next_value::<&'de RawValue>()?;
        raw_decimal(raw).ok_or_else(|| de::Error::custom("`cost_usd` takes the general path"))
    }
    fn take(obj: &mut Map<String, Value>, key: &str) -> Result<Option<Decimal>, String> {
        let v = obj.remove(key);
        value_decimal(v.as_ref(), key)
    }
}

/// `cost_source`: set when the record is finished; read from the input only as `unknown`
/// (a stored record read back), any other value is ignored.
pub struct Source;

impl Kind for Source {
    type Owned = Option<CostSource>;
    type Ref<'a> = Option<CostSource>;
    type Builder = StringBuilder;
    const NULLABLE: bool = false;
    fn data_type() -> DataType {
        DataType::Utf8
    }
    fn builder(rows: usize) -> StringBuilder {
        StringBuilder::with_capacity(rows, rows * 8)
    }
    fn append(b: &mut StringBuilder, v: &Option<CostSource>) {
        b.append_value(v.unwrap_or(CostSource::Unknown).as_str());
    }
    fn finish(b: &mut StringBuilder) -> ArrayRef {
        std::sync::Arc::new(b.finish())
    }
    fn lift(v: Option<CostSource>) -> Option<CostSource> {
        v
    }
    fn borrow(v: &Option<CostSource>) -> Option<CostSource> {
        *v
    }
    fn missing<'a>() -> Option<Self::Ref<'a>> {
        Some(None)
    }
    fn own(v: Option<CostSource>) -> Option<CostSource> {
        v
    }
    fn read(a: &dyn Array, i: usize) -> Option<CostSource> {
        read_opt_text(a, i).as_deref().and_then(CostSource::parse)
    }
    fn check(_: &str, _: &Option<CostSource>) -> Result<(), String> {
        Ok(())
    }
    fn parse<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<CostSource>, A::Error> {
        let t = map.next_value::<Option<Text<'de>>>()?;
        Ok(t.and_then(|t| CostSource::parse(&t.0))).map(|c| c.filter(|c| *c == CostSource::Unknown))
    }
    fn take(obj: &mut Map<String, Value>, key: &str) -> Result<Option<CostSource>, String> {
        Ok(match obj.remove(key) {
            Some(Value::String(s)) => CostSource::parse(&s).filter(|c| *c == CostSource::Unknown),
            _ => None,
        })
    }
}

/// A duration in milliseconds: finite and >= 0.
pub struct Ms;

impl Kind for Ms {
    optional_scalar!(f64, Float64Builder);
    fn data_type() -> DataType {
        DataType::Float64
    }
    fn read(a: &dyn Array, i: usize) -> Option<f64> {
        (!a.is_null(i)).then(|| a.as_primitive::<Float64Type>().value(i))
    }
    fn check(name: &str, v: &Option<f64>) -> Result<(), String> {
        match *v {
            Some(x) if !x.is_finite() || x < 0.0 => {
                Err(format!("`{name}` must be a finite number >= 0, got {x}"))
            }
            _ => Ok(()),
        }
    }
    fn parse<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<f64>, A::Error> {
        map.next_value()
    }
    fn take(obj: &mut Map<String, Value>, key: &str) -> Result<Option<f64>, String> {
        let v = opt_f64(obj, key);
        obj.remove(key);
        v
    }
}

/// A small integer (`status`, `attempt`) in `MIN..MAX_EXCLUSIVE`; the error says what the
/// field must be.
pub struct Small<const STATUS: bool>;
/// An HTTP status code, `0..1000`.
pub type Status = Small<true>;
/// An attempt number, `>= 0`.
pub type Attempt = Small<false>;

impl<const STATUS: bool> Kind for Small<STATUS> {
    optional_scalar!(i32, Int32Builder);
    fn data_type() -> DataType {
        DataType::Int32
    }
    fn read(a: &dyn Array, i: usize) -> Option<i32> {
        (!a.is_null(i)).then(|| a.as_primitive::<Int32Type>().value(i))
    }
    fn check(name: &str, v: &Option<i32>) -> Result<(), String> {
        match *v {
            Some(s) if STATUS && !(0..1000).contains(&s) => {
                Err(format!("`{name}` must be an HTTP status code, got {s}"))
            }
            Some(a) if !STATUS && a < 0 => Err(format!("`{name}` must be >= 0, got {a}")),
            _ => Ok(()),
        }
    }
    fn parse<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<i32>, A::Error> {
        map.next_value()
    }
    fn take(obj: &mut Map<String, Value>, key: &str) -> Result<Option<i32>, String> {
        let v = opt_i32(obj, key);
        obj.remove(key);
        v
    }
}

/// A flag (`streamed`); `"true"`/`"false"` accepted by the general path.
pub struct Flag;

impl Kind for Flag {
    optional_scalar!(bool, BooleanBuilder);
    fn data_type() -> DataType {
        DataType::Boolean
    }
    fn read(a: &dyn Array, i: usize) -> Option<bool> {
        (!a.is_null(i)).then(|| a.as_boolean().value(i))
    }
    fn check(_: &str, _: &Option<bool>) -> Result<(), String> {
        Ok(())
    }
    fn parse<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<bool>, A::Error> {
        map.next_value()
    }
    fn take(obj: &mut Map<String, Value>, key: &str) -> Result<Option<bool>, String> {
        let v = opt_bool(obj, key);
        obj.remove(key);
        v
    }
}
