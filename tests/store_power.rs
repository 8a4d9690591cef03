//! Power loss: a killed process keeps the page cache, a power cut does not, so the sync
//! order is proven from the system calls themselves. `serve` runs under `strace` while it
//! ingests, flushes and compacts; the trace must show every Parquet file a WAL segment's rows
//! went into, and that file's directory entry, synced before the segment was unlinked.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Server, api_query, bin, client, num};

/// One completed system call from the trace.
#[derive(Debug)]
struct Call {
    name: String,
    /// The quoted arguments (paths), in order.
    paths: Vec<String>,
    /// The first numeric argument (a descriptor), if any.
    fd: Option<i64>,
    result: i64,
}

/// Parses `strace -f` output, joining `<unfinished ...>` calls with their `resumed` halves.
fn parse_trace(text: &str) -> Vec<Call> {
    let mut open: HashMap<String, String> = HashMap::new();
    let mut calls = Vec::new();
    for line in text.lines() {
        let (pid, rest) = line.split_once(' ').unwrap_or(("", line));
        let rest = rest.trim_start();
        let full = if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            open.insert(pid.to_string(), head.to_string());
            continue;
        } else if rest.starts_with("<...") {
            let Some((_, tail)) = rest.split_once("resumed>") else {
                continue;
            };
            format!("{}{}", open.remove(pid).unwrap_or_default(), tail)
        } else {
            rest.to_string()
        };
        let Some((name, args)) = full.split_once('(') else {
            continue;
        };
        // `CALL(ARGS)   = RESULT`: strace pads before the `=`; paths may hold `=` too.
        let Some((args, result)) = args.rsplit_once('=') else {
            continue;
        };
        let Some(args) = args.trim_end().strip_suffix(')') else {
            continue;
        };
        let result: i64 = result
            .split_whitespace()
            .next()
            .and_then(|r| r.parse().ok())
            .unwrap_or(-1);
        let paths: Vec<String> = args
            .split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        let fd = args
            .split(',')
            .next()
            .and_then(|a| a.trim().parse::<i64>().ok());
        calls.push(Call {
            name: name.trim().to_string(),
            paths,
            fd,
            result,
        });
    }
    calls
}

fn parent(p: &str) -> String {
    Path::new(p)
        .parent()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Checks the trace; returns how many WAL unlinks had published files to check.
fn check_sync_order(calls: &[Call], data: &str) -> usize {
    let mut fd_path: HashMap<i64, String> = HashMap::new();
    let mut synced: HashSet<String> = HashSet::new();
    let mut dir_synced: HashMap<String, usize> = HashMap::new();
    // Final Parquet path → (index of the rename into it, its source).
    let mut published: HashMap<String, (usize, String)> = HashMap::new();
    let mut checked = 0;
    for (i, c) in calls.iter().enumerate() {
        if c.result < 0 {
            continue;
        }
        match c.name.as_str() {
            "openat" | "open" => {
                if let Some(p) = c.paths.first() {
                    fd_path.insert(c.result, p.clone());
                }
            }
            "fsync" | "fdatasync" => {
                if let Some(p) = c.fd.and_then(|fd| fd_path.get(&fd)) {
                    synced.insert(p.clone());
                    dir_synced.insert(p.clone(), i);
                }
            }
            "rename" | "renameat" | "renameat2" if c.paths.len() == 2 => {
                let (from, to) = (&c.paths[0], &c.paths[1]);
                if to.starts_with(data) && to.ends_with(".parquet") {
                    published.insert(to.clone(), (i, from.clone()));
                }
            }
            "unlink" | "unlinkat" => {
                let Some(p) = c.paths.first() else { continue };
                if !p.ends_with(".wal") || published.is_empty() {
                    continue;
                }
                for (file, (renamed_at, from)) in &published {
                    assert!(
                        synced.contains(file) || synced.contains(from),
                        "WAL segment {p} unlinked before {file} was synced"
                    );
                    let dir = parent(file);
                    assert!(
                        dir_synced.get(&dir).is_some_and(|at| at > renamed_at),
                        "WAL segment {p} unlinked before the directory {dir} was synced after {file} was renamed into it"
                    );
                }
                checked += 1;
            }
            _ => {}
        }
    }
    checked
}

#[tokio::test]
async fn wal_segments_go_only_after_their_parquet_files_and_directories_are_synced() {
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().canonicalize().unwrap();
    let data = root_path.join("data");
    let trace = root_path.join("trace.txt");
    let config = root_path.join("config.toml");
    std::fs::write(&config, "[store]\ncompact_min_files = 2\n").unwrap();
    let mut child = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .args([
            "-e",
            "trace=fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat,openat,open",
        ])
        .arg(bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--flush-interval-ms",
            "100",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .env("SWITCHYARD_LOG", "warn")
        .env_remove("SWITCHYARD_INGEST_TOKEN")
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("strace is installed (.ci/run installs it)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("server exited").unwrap();
        if let Some(url) = line.strip_prefix("switchyard listening on ") {
            break url.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let s = Server {
        child,
        base,
        data_dir: data.clone(),
    };
    let c = client();
    // Three flushes into the same partitions: files, rollups and a compaction.
    for round in 0..3 {
        let body: String = (0..200)
            .map(|i| {
                crate::common::record(&format!("p-{round}-{i}"), "gpt-4o-mini", 100, 20) + "\n"
            })
            .collect();
        let r = c.post(s.url("/v1/logs")).body(body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let n = api_query(&c, &s, "SELECT count(*) FROM requests_stored").await;
            if num(&n[0][0]) as usize == 200 * (round + 1) {
                break;
            }
            assert!(Instant::now() < until, "flush {round} never happened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // SIGTERM the traced server itself (its pid is in the writer lock file), not strace.
    let holder: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("LOCK")).unwrap()).unwrap();
    let pid = holder["pid"].as_u64().unwrap().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let mut s = s;
    assert!(s.child.wait().unwrap().success());
    let calls = parse_trace(&std::fs::read_to_string(&trace).unwrap());
    let checked = check_sync_order(&calls, data.to_str().unwrap());
    assert!(
        checked >= 3,
        "only {checked} WAL segments were unlinked after a flush"
    );
}
