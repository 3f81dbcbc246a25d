//! Embeds the export catalogue (`sql/catalog/*.sql`) and its access policy (`sql/access.toml`)
//! in the functions, so a deployment is the bootstrap binary alone and the catalogue and grants
//! it serves are the ones it was built and tested with.

use std::fmt::Write;
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../sql/catalog");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    let mut code = String::from("pub const EMBEDDED: &[(&str, &str)] = &[\n");
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path.file_name().unwrap().to_string_lossy();
        let path = path.canonicalize().unwrap();
        writeln!(
            code,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    code.push_str("];\n");
    let access = dir.join("../access.toml");
    println!("cargo:rerun-if-changed={}", access.display());
    match access.canonicalize() {
        Ok(path) => writeln!(
            code,
            "pub const ACCESS: Option<&str> = Some(include_str!({:?}));",
            path.display().to_string()
        )
        .unwrap(),
        Err(_) => code.push_str("pub const ACCESS: Option<&str> = None;\n"),
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("catalog.rs");
    std::fs::write(out, code).unwrap();
}
