//! The README's "use it on your gateway's logs" inputs (`data/examples/`, made by each
//! gateway's own library: see `data/examples/make_examples.py`) import as the README says:
//! every record accepted, priced, and with the task the application set.

use std::path::Path;

use crate::common::{query_csv, run};

fn ingest(data: &Path, file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/examples")
        .join(file);
    let out = run(
        &[
            "ingest",
            "--data-dir",
            data.to_str().unwrap(),
            "--no-progress",
            path.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_gateway_example_imports_with_its_tasks_and_costs() {
    let dir = tempfile::tempdir().unwrap();
    for (file, gateway, n, tasks) in [
        ("litellm.ndjson", "litellm", 5, 3),
        ("openrouter-generations.ndjson", "openrouter", 5, 3),
        ("otel-openai.json", "otel", 5, 3),
    ] {
        let data = dir.path().join(gateway);
        let summary = ingest(&data, file);
        assert!(
            summary.contains(&format!("accepted {n} ")),
            "{file}: {summary}"
        );
        let rows = query_csv(
            &data,
            "SELECT COUNT(*), COUNT(DISTINCT task), \
             SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END), \
             SUM(CASE WHEN task = 'default' THEN 1 ELSE 0 END) FROM requests",
        );
        assert_eq!(rows[0][0], n.to_string(), "{file}");
        assert_eq!(rows[0][1], tasks.to_string(), "{file}: tasks");
        assert_eq!(rows[0][2], "0", "{file}: unpriced records");
        assert_eq!(rows[0][3], "0", "{file}: records without their task");
    }
}
