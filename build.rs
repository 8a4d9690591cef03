//! Embeds the report set (`queries/*.sql`), the dashboard definitions (`dashboards/*.json`)
//! and the dashboard assets (`assets/*`) into the binary: adding a file is all it takes.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let out = std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into());
    let mut code = String::new();
    for (name, dir, ext) in [
        ("REPORTS", "queries", Some("sql")),
        ("DASHBOARDS", "dashboards", Some("json")),
        ("ASSETS", "assets", None),
    ] {
        let dir = Path::new(&root).join(dir);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| {
            p.is_file()
                && ext.is_none_or(|x| p.extension().is_some_and(|e| e == x))
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        });
        files.sort();
        let _ = writeln!(code, "pub static {name}: &[(&str, &[u8])] = &[");
        for p in files {
            println!("cargo:rerun-if-changed={}", p.display());
            let key = match ext {
                Some(_) => p.file_stem(),
                None => p.file_name(),
            }
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
            let _ = writeln!(
                code,
                "    ({key:?}, include_bytes!({:?})),",
                p.display().to_string()
            );
        }
        code.push_str("];\n");
    }
    let _ = std::fs::write(Path::new(&out).join("embedded.rs"), code);
}
