//! Compiles the gRPC API (`proto/gateway/v1/*.proto`) with tonic-build.
//! Needs `protoc` (Debian: protobuf-compiler, installed by tools/setup.sh);
//! `PROTOC` may point at another one.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let files: Vec<_> =
        ["config", "flows", "stats"].iter().map(|f| root.join(format!("gateway/v1/{f}.proto"))).collect();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        // gwctl prints messages as JSON (enums as their numbers; gwctl names them where it matters).
        .type_attribute(".gateway.v1", "#[derive(serde::Serialize)]")
        .compile_protos(&files, &[root])
        .map_err(|e| {
            format!("compiling the .proto files (is protoc installed? apt-get install protobuf-compiler): {e}")
        })?;
    Ok(())
}
