//! Distributed SQL on Ballista (cargo feature `distributed`): one scheduler and two executors
//! on 127.0.0.1, reading a bucket on a local moto server, answer every report in `queries/`
//! and ad-hoc SQL as the single node does.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::common::{Moto, bin, env_refs, free_port, run, spawn_announced};

/// A cluster process, killed on drop.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `switchyard ARGS` and waits for its line starting with `announce`; returns the
/// process and the rest of that line.
fn start(args: &[&str], env: &[(&'static str, String)], announce: &str) -> (Node, String) {
    let mut c = Command::new(bin());
    c.args(args).env("SWITCHYARD_LOG", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    let (child, rest) = spawn_announced(c, announce);
    (Node(child), rest)
}

fn wait_listening(addr: &str) {
    let until = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < until, "{addr} never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A CSV answer as its header and its rows of cells, rows sorted by their text and whole
/// numbers: rows that tie under a report's ORDER BY may come in either order on the cluster.
fn normalized(csv: &str) -> Vec<Vec<String>> {
    let mut lines = csv.lines();
    let header = vec![lines.next().unwrap_or_default().to_string()];
    let mut rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    rows.sort_by_cached_key(|r| {
        let exact: Vec<String> = r
            .iter()
            .filter(|c| fraction(c).is_none())
            .cloned()
            .collect();
        (exact, r.clone())
    });
    rows.insert(0, header);
    rows
}

/// A fractional number as its value and the decimals it shows; `None` for text and whole
/// numbers.
fn fraction(cell: &str) -> Option<(f64, i32)> {
    let x: f64 = cell.parse().ok()?;
    if cell.contains(['e', 'E']) {
        return Some((x, 0));
    }
    let decimals = cell.split_once('.')?.1.len();
    Some((x, i32::try_from(decimals).unwrap_or(i32::MAX)))
}

/// Whether two normalized answers agree: the same text and whole numbers, fractions within
/// 1e-9 of each other or one unit apart in the last decimal shown. The cluster sums in
/// another order, so a value on a `ROUND` boundary may round either way.
fn agree(a: &[Vec<String>], b: &[Vec<String>]) -> bool {
    let cell = |x: &String, y: &String| match (fraction(x), fraction(y)) {
        (Some((x, dx)), Some((y, dy))) => {
            let shown = dx.max(dy);
            let unit = if shown > 0 {
                10f64.powi(-shown) * 1.000_001
            } else {
                0.0
            };
            (x - y).abs() <= unit.max(1e-9 * x.abs().max(y.abs()))
        }
        _ => x == y,
    };
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(ra, rb)| ra.len() == rb.len() && ra.iter().zip(rb).all(|(x, y)| cell(x, y)))
}

/// Runs `switchyard ARGS --format csv --data-dir URL [--cluster CLUSTER]`, normalized.
fn answer(
    args: &[&str],
    url: &str,
    cluster: Option<&str>,
    env: &[(&'static str, String)],
) -> Vec<Vec<String>> {
    let mut all = args.to_vec();
    all.extend(["--format", "csv", "--data-dir", url]);
    if let Some(c) = cluster {
        all.extend(["--cluster", c]);
    }
    let out = run(&all, &env_refs(env));
    assert!(
        out.status.success(),
        "{args:?} (cluster {cluster:?}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    normalized(&String::from_utf8(out.stdout).unwrap())
}

#[test]
fn every_report_on_two_executors_equals_the_single_node_answer() {
    let moto = Moto::start();
    moto.bucket("cluster");
    let env = moto.env();
    let root = tempfile::tempdir().unwrap();
    let url = "s3://cluster/store";
    let logs = root.path().join("logs.ndjson");
    let out = run(
        &[
            "generate",
            "--requests",
            "4000",
            "--days",
            "3",
            "--out",
            logs.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wal = root.path().join("wal");
    let out = run(
        &[
            "ingest",
            "--no-progress",
            "--data-dir",
            url,
            "--wal-dir",
            wal.to_str().unwrap(),
            logs.to_str().unwrap(),
        ],
        &env_refs(&env),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (_scheduler, cluster) = start(
        &["scheduler", "--listen", "127.0.0.1:0", "--data-dir", url],
        &env,
        "switchyard scheduler listening on ",
    );
    let scheduler = cluster.trim_start_matches("df://").to_string();
    let mut executors = Vec::new();
    for i in 0..2 {
        let flight = format!("127.0.0.1:{}", free_port());
        let grpc = format!("127.0.0.1:{}", free_port());
        let work = root.path().join(format!("executor-{i}"));
        executors.push(start(
            &[
                "executor",
                "--scheduler",
                &scheduler,
                "--listen",
                &flight,
                "--grpc-listen",
                &grpc,
                "--vcores",
                "2",
                "--work-dir",
                work.to_str().unwrap(),
                "--data-dir",
                url,
            ],
            &env,
            "switchyard executor listening on ",
        ));
        wait_listening(&flight);
    }

    // Ad-hoc SQL: a count the cluster must get exactly, and a join with `prices`.
    let count = answer(
        &["query", "SELECT count(*) AS n FROM requests"],
        url,
        Some(&cluster),
        &env,
    );
    assert_eq!(count, [["n"], ["4000"]], "every generated request, once");
    let joined = "SELECT r.model, p.provider, count(*) AS n FROM requests r \
                  JOIN prices p ON p.model = r.model GROUP BY 1, 2";
    let single = answer(&["query", joined], url, None, &env);
    assert!(single.len() > 2, "the join has rows: {single:?}");
    let distributed = answer(&["query", joined], url, Some(&cluster), &env);
    assert!(
        agree(&distributed, &single),
        "join: cluster {distributed:?} vs single node {single:?}"
    );

    let list = run(&["report", "--list"], &[]);
    let names: Vec<String> = String::from_utf8(list.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    let on_disk = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("queries"))
        .unwrap()
        .count();
    assert_eq!(names.len(), on_disk, "every file in queries/ is a report");
    let mut answered = 0;
    for name in &names {
        let single = answer(&["report", name], url, None, &env);
        answered += usize::from(single.len() > 1);
        let distributed = answer(&["report", name], url, Some(&cluster), &env);
        assert!(
            agree(&distributed, &single),
            "report {name}: cluster {distributed:?} vs single node {single:?}"
        );
    }
    // Both executors ran stages: each wrote shuffle output under its work dir.
    for i in 0..2 {
        let jobs = std::fs::read_dir(root.path().join(format!("executor-{i}")))
            .map(|d| d.count())
            .unwrap_or(0);
        assert!(jobs > 0, "executor {i} ran no task");
    }
    assert!(
        answered * 4 >= names.len() * 3,
        "most reports have rows to compare: {answered} of {}",
        names.len()
    );
}
