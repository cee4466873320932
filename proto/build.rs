//! Compiles every `.proto` file under `proto/` into Rust with `protox` (a pure-Rust protobuf
//! compiler, so no `protoc` needs to be installed) and `tonic-prost-build`.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

const PROTO_DIR: &str = "proto";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO_DIR}");

    let mut files = Vec::new();
    find_protos(Path::new(PROTO_DIR), &mut files)?;
    files.sort();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let fds = protox::compile(&files, [PROTO_DIR])?;
    tonic_prost_build::configure()
        // `bytes` fields become `bytes::Bytes`: keys and values can share the request buffer.
        .bytes(".")
        // Maps keep their keys in order, so encoding the same metadata gives the same bytes.
        .btree_map(".")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}

/// Collects every `.proto` file below `dir`, recursively.
fn find_protos(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), Box<dyn Error>> {
    let entries = fs::read_dir(dir)
        .map_err(|err| format!("cannot list proto directory {}: {err}", dir.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|err| format!("cannot list proto directory {}: {err}", dir.display()))?
            .path();
        if path.is_dir() {
            // Cargo only watches the directory itself for added files, so watch each subdirectory too.
            println!("cargo:rerun-if-changed={}", path.display());
            find_protos(&path, files)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            files.push(path);
        }
    }
    Ok(())
}
