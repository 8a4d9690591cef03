//! String columns read as `Utf8View` while a query runs, and given back as `Utf8`.
//!
//! Asked for `Utf8View`, the Parquet reader decodes a string column into views (each value's
//! length and first bytes, pointing into the decoded pages), where `Utf8` copies every value
//! into one buffer per batch; comparisons and group keys then look at the inline prefix first.
//! The files keep `Utf8` (a view is a read-time type, not a Parquet one), the rows still in the
//! write buffer and the rollups computed from them are cast to the same types so that both
//! parts of a table agree, and an answer's view columns are cast back to `Utf8`, so answers
//! keep the types they had before (callers read them as `StringArray`; CSV, JSON and Parquet
//! output are unchanged).

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};

use crate::error::Result;
use crate::schema::Table;

/// `schema` with its top-level `Utf8` columns as `Utf8View`, except those named in `keep`.
fn with_views(schema: &Schema, keep: &[&str]) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if *f.data_type() == DataType::Utf8 && !keep.contains(&f.name().as_str()) {
                f.as_ref().clone().with_data_type(DataType::Utf8View)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Columns read as `Utf8` all the same: the ids requests are joined on. Unique per row, they
/// are stored plain (not dictionary-encoded), so their views point into whole decoded pages,
/// and a hash join's build side of such batches keeps every page it took a row from.
const JOIN_IDS: [&str; 2] = ["request_id", "parent_id"];

/// The columns of `table`'s files as queries read them: strings as `Utf8View`, but the ids.
pub fn read_file_schema(table: Table) -> SchemaRef {
    with_views(&table.file_schema(), &JOIN_IDS)
}

/// `table` as queries see it: [`read_file_schema`] plus the partition columns, which are not in
/// the files (the listing table makes them from the path) and stay `Utf8`.
pub fn read_schema(table: Table) -> SchemaRef {
    let keep: Vec<&str> = JOIN_IDS
        .iter()
        .copied()
        .chain(table.partition_columns().iter().copied())
        .collect();
    with_views(&table.table_schema(), &keep)
}

/// Casts the columns of `batch` (of `table`'s table schema) to the types of [`read_schema`].
pub fn to_read(table: Table, batch: &RecordBatch) -> Result<RecordBatch> {
    cast_to(batch, read_schema(table))
}

/// Batches with `schema`'s column types; a column already of that type is shared, not copied.
fn cast_to(batch: &RecordBatch, schema: SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| -> Result<ArrayRef> {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                Ok(arrow::compute::cast(c, f.data_type())?)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// `dt` with every view type inside it replaced by its offset type, or `None` when it holds
/// none.
fn unviewed(dt: &DataType) -> Option<DataType> {
    let field = |f: &Field| unviewed(f.data_type()).map(|t| f.clone().with_data_type(t));
    match dt {
        DataType::Utf8View => Some(DataType::Utf8),
        DataType::BinaryView => Some(DataType::Binary),
        DataType::List(f) => field(f).map(|f| DataType::List(Arc::new(f))),
        DataType::LargeList(f) => field(f).map(|f| DataType::LargeList(Arc::new(f))),
        DataType::Struct(fs) => {
            if fs.iter().all(|f| unviewed(f.data_type()).is_none()) {
                return None;
            }
            let fs: Fields = fs
                .iter()
                .map(|f| field(f).unwrap_or_else(|| f.as_ref().clone()))
                .collect();
            Some(DataType::Struct(fs))
        }
        _ => None,
    }
}

/// The schema of an answer whose plan produced `schema`: view types as `Utf8`/`Binary`.
pub fn answer_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match unviewed(f.data_type()) {
            Some(t) => f.as_ref().clone().with_data_type(t),
            None => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batches` cast to `schema` (from [`answer_schema`]).
pub fn to_answer(batches: Vec<RecordBatch>, schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
    batches.iter().map(|b| cast_to(b, schema.clone())).collect()
}
