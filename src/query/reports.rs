//! The report set: `queries/*.sql`, embedded at build time. Each file opens with a header
//! comment (`-- purpose:`, `-- params:`, `-- columns:`) and is run with a time window and
//! optional task and model filters bound to its parameters:
//!
//! | parameter | bound to |
//! |---|---|
//! | `$since`, `$until` | the half-open window `[since, until)` as quoted RFC 3339 UTC timestamps |
//! | `$since_date`, `$until_date` | the window's first and last dates (`'YYYY-MM-DD'`), for partition pruning |
//! | `$task`, `$model` | a quoted filter value, or `NULL` for all |
//!
//! Values are formatted by switchyard from parsed times and quoted, never pasted from input,
//! so a report stays the same SQL text for DataFusion and for outside engines (DuckDB runs the
//! same files in the benchmark).
//!
//! `SWITCHYARD_QUERIES_DIR` names a directory of more `NAME.sql` files, read at each run:
//! a team's own reports, or changed copies of the shipped ones (same name wins).

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::error::{Error, Result};
use crate::query::{QueryEngine, QueryResult};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// Dashboard page assets (`assets/FILE`), by file name.
pub use embedded::ASSETS;
/// Dashboard definitions (`dashboards/NAME.json`), by name.
pub use embedded::DASHBOARDS;

/// One report of the set.
#[derive(Debug, Clone)]
pub struct Report {
    pub name: String,
    pub sql: String,
    /// The header's one-line purpose.
    pub purpose: String,
    pub params: String,
    pub columns: String,
}

fn parse(name: &str, body: &[u8]) -> Result<Report> {
    let sql = std::str::from_utf8(body)
        .map_err(|_| Error::Invalid(format!("report {name} is not UTF-8")))?;
    let field = |key: &str| {
        sql.lines()
            .take_while(|l| l.starts_with("--"))
            .find_map(|l| {
                l.trim_start_matches('-')
                    .trim()
                    .strip_prefix(key)
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    Ok(Report {
        name: name.to_string(),
        sql: sql.to_string(),
        purpose: field("purpose:"),
        params: field("params:"),
        columns: field("columns:"),
    })
}

/// Every report, by name: the shipped set, then `SWITCHYARD_QUERIES_DIR`'s files over it.
pub fn all() -> Result<Vec<Report>> {
    let mut out: std::collections::BTreeMap<String, Report> = std::collections::BTreeMap::new();
    for (name, body) in embedded::REPORTS {
        out.insert(name.to_string(), parse(name, body)?);
    }
    if let Some(dir) = std::env::var_os("SWITCHYARD_QUERIES_DIR") {
        let dir = std::path::PathBuf::from(dir);
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        for e in entries {
            let path = e.map_err(|e| Error::io(&dir, e))?.path();
            let Some(name) = path
                .extension()
                .filter(|x| *x == "sql")
                .and(path.file_stem())
                .map(|n| n.to_string_lossy().into_owned())
            else {
                continue;
            };
            let body = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            out.insert(name.clone(), parse(&name, &body)?);
        }
    }
    Ok(out.into_values().collect())
}

/// The report called `name`.
pub fn get(name: &str) -> Result<Report> {
    let mut all = all()?;
    match all.iter().position(|r| r.name == name) {
        Some(i) => Ok(all.swap_remove(i)),
        None => {
            let names: Vec<&str> = all.iter().map(|r| r.name.as_str()).collect();
            Err(Error::NotFound(format!(
                "no report named {name:?}; reports: {}",
                names.join(", ")
            )))
        }
    }
}

/// The window and filters a report runs with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub task: Option<String>,
    pub model: Option<String>,
}

/// Earliest and latest times an unbounded window stands for.
const BEGIN: &str = "1970-01-01T00:00:00Z";
const END: &str = "2200-01-01T00:00:00Z";

impl Window {
    /// Parses `--since`/`--until` style bounds: `7d`, `24h`, `30m` (before `now`), a date
    /// (`2026-11-01`, midnight UTC) or an RFC 3339 time. Empty strings mean unbounded.
    pub fn parse(
        since: Option<&str>,
        until: Option<&str>,
        task: Option<&str>,
        model: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Window> {
        let w = Window {
            since: parse_bound("since", since, now)?,
            until: parse_bound("until", until, now)?,
            task: task.filter(|s| !s.is_empty()).map(str::to_string),
            model: model.filter(|s| !s.is_empty()).map(str::to_string),
        };
        if let (Some(s), Some(u)) = (w.since, w.until)
            && s >= u
        {
            return Err(Error::Invalid(format!(
                "since ({}) must be before until ({})",
                s.to_rfc3339(),
                u.to_rfc3339()
            )));
        }
        Ok(w)
    }

    /// `sql` with its parameters bound. An unknown `$name` is an error naming it.
    pub fn bind(&self, sql: &str) -> Result<String> {
        let ts = |t: Option<DateTime<Utc>>, default: &str| match t {
            Some(t) => quote(&t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
            None => quote(default),
        };
        let date = |t: Option<DateTime<Utc>>, default: &str| match t {
            Some(t) => quote(&t.format("%Y-%m-%d").to_string()),
            None => quote(&default[..10]),
        };
        let opt = |v: &Option<String>| v.as_deref().map_or_else(|| "NULL".to_string(), quote);
        let mut out = String::with_capacity(sql.len() + 64);
        let mut rest = sql;
        // Parameters are bound outside comments and string literals only.
        while let Some(at) = rest.find(['$', '\'', '-']) {
            let (head, tail) = rest.split_at(at);
            out.push_str(head);
            if tail.starts_with("--") {
                let end = tail.find('\n').unwrap_or(tail.len());
                out.push_str(&tail[..end]);
                rest = &tail[end..];
                continue;
            }
            if let Some(lit) = tail.strip_prefix('\'') {
                // A literal runs to the next quote not doubled ('' is an escaped quote).
                let end = lit.find('\'').map_or(tail.len(), |i| i + 2);
                out.push_str(&tail[..end]);
                rest = &tail[end..];
                continue;
            }
            if !tail.starts_with('$') {
                out.push_str(&tail[..1]);
                rest = &tail[1..];
                continue;
            }
            let after = &tail[1..];
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            let value = match &after[..len] {
                "since" => ts(self.since, BEGIN),
                "until" => ts(self.until, END),
                "since_date" => date(self.since, BEGIN),
                "until_date" => date(self.until, END),
                "task" => opt(&self.task),
                "model" => opt(&self.model),
                other => {
                    return Err(Error::Invalid(format!(
                        "unknown report parameter ${other}; known: $since, $until, \
                         $since_date, $until_date, $task, $model"
                    )));
                }
            };
            out.push_str(&value);
            rest = &after[len..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn parse_bound(what: &str, v: Option<&str>, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
    let Some(v) = v.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let bad = || {
        Error::Invalid(format!(
            "--{what} {v:?}: expected a duration before now (7d, 24h, 30m), a date \
             (2026-11-01) or an RFC 3339 time"
        ))
    };
    if let Some(unit) = v.chars().last().filter(|c| matches!(c, 'd' | 'h' | 'm'))
        && let Ok(n) = v[..v.len() - 1].parse::<i64>()
    {
        let d = match unit {
            'd' => Duration::try_days(n),
            'h' => Duration::try_hours(n),
            _ => Duration::try_minutes(n),
        }
        .ok_or_else(bad)?;
        return Ok(Some(now - d));
    }
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()));
    }
    DateTime::parse_from_rfc3339(v)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|_| bad())
}

/// Runs report `name` over `window`.
pub async fn run(engine: &QueryEngine, name: &str, window: &Window) -> Result<QueryResult> {
    let sql = bound_sql(name, window)?;
    engine.sql(&sql).await.map_err(|e| named_error(name, e))
}

/// The SQL of report `name` with `window` bound into it.
pub fn bound_sql(name: &str, window: &Window) -> Result<String> {
    window.bind(&get(name)?.sql)
}

/// An error of report `name` as its user is shown it (a rejection names the report).
pub fn named_error(name: &str, e: Error) -> Error {
    match e {
        Error::QueryRejected(m) => Error::QueryRejected(format!("report {name}: {m}")),
        other => other,
    }
}
