//! Rendering query answers: a text table, CSV with a header, JSON, NDJSON, Parquet, and the
//! JSON shape of `POST /api/query` (`{"columns": [...], "rows": [[...]]}`).

use arrow::array::RecordBatch;
use serde_json::{Map, Value};

use super::QueryResult;
use crate::error::{Error, Result};

/// Output formats of `switchyard query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    #[default]
    Table,
    Csv,
    Json,
    Ndjson,
    Parquet,
}

/// The answer in `format`, as bytes to write.
pub fn render(r: &QueryResult, format: OutputFormat) -> Result<Vec<u8>> {
    Ok(match format {
        OutputFormat::Table => {
            let mut s = table(r)?;
            s.push('\n');
            s.into_bytes()
        }
        OutputFormat::Csv => csv(r)?,
        OutputFormat::Json => {
            let mut v = serde_json::to_vec_pretty(&json_rows(r)?)?;
            v.push(b'\n');
            v
        }
        OutputFormat::Ndjson => {
            let mut v = Vec::new();
            for row in json_rows(r)? {
                serde_json::to_writer(&mut v, &row)?;
                v.push(b'\n');
            }
            v
        }
        OutputFormat::Parquet => parquet(r)?,
    })
}

/// One Parquet file (zstd) holding the answer.
pub fn parquet(r: &QueryResult) -> Result<Vec<u8>> {
    use parquet::basic::{Compression, ZstdLevel};
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(Vec::new(), r.schema.clone(), Some(props))?;
    for b in &r.batches {
        w.write(b)?;
    }
    Ok(w.into_inner()?)
}

/// A text table (empty answers still show their header).
pub fn table(r: &QueryResult) -> Result<String> {
    if r.batches.iter().all(|b| b.num_rows() == 0) {
        let empty = RecordBatch::new_empty(r.schema.clone());
        return Ok(arrow::util::pretty::pretty_format_batches(&[empty])?.to_string());
    }
    Ok(arrow::util::pretty::pretty_format_batches(&r.batches)?.to_string())
}

/// CSV with a header row.
pub fn csv(r: &QueryResult) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut w = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut out);
        if r.batches.is_empty() {
            w.write(&RecordBatch::new_empty(r.schema.clone()))?;
        }
        for b in &r.batches {
            w.write(b)?;
        }
    }
    Ok(out)
}

/// Rows as JSON objects, columns in order.
pub fn json_rows(r: &QueryResult) -> Result<Vec<Map<String, Value>>> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::JsonArray>(&mut buf);
        for b in &r.batches {
            w.write(b)?;
        }
        w.finish()?;
    }
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&buf).map_err(|e| Error::Internal(format!("query JSON: {e}")))
}

/// `{"columns": [...], "rows": [[...], ...]}`.
pub fn columns_rows(r: &QueryResult) -> Result<Value> {
    let columns: Vec<String> = r.schema.fields().iter().map(|f| f.name().clone()).collect();
    let rows: Vec<Value> = json_rows(r)?
        .into_iter()
        .map(|mut obj| {
            Value::Array(
                columns
                    .iter()
                    .map(|c| obj.remove(c).unwrap_or(Value::Null))
                    .collect(),
            )
        })
        .collect();
    Ok(serde_json::json!({ "columns": columns, "rows": rows }))
}
