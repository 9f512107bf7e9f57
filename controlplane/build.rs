//! Compiles the gRPC API (`proto/gateway/v1/*.proto`) with tonic-build.
//! Needs `protoc` (Debian: protobuf-compiler, installed by tools/setup.sh);
//! `PROTOC` may point at another one.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let files: Vec<_> =
        ["config", "flows", "stats", "explain"].iter().map(|f| root.join(format!("gateway/v1/{f}.proto"))).collect();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    // gwctl prints messages as JSON; enum fields by name (api::pbjson).
    let by_name = [
        ("ConfigStatus.state", "enforcement_state"),
        ("GetRequest.kind", "resource_kind"),
        ("FlowFilter.verdict", "verdicts"),
        ("Endpoint.kind", "endpoint_kind"),
        ("Flow.type", "flow_event_type"),
        ("Flow.verdict", "verdict"),
        ("LostEvent.source", "lost_event_source"),
        ("FlowAggregate.verdict", "verdict"),
        ("ExplainResponse.verdict", "verdict"),
    ];
    let mut builder = tonic_build::configure()
        .build_server(true)
        .build_client(true)
        .type_attribute(".gateway.v1", "#[derive(serde::Serialize)]");
    for (field, with) in by_name {
        builder = builder.field_attribute(
            format!(".gateway.v1.{field}"),
            format!(r#"#[serde(serialize_with = "crate::api::pbjson::{with}")]"#),
        );
    }
    builder.compile_protos(&files, &[root]).map_err(|e| {
        format!("compiling the .proto files (is protoc installed? apt-get install protobuf-compiler): {e}")
    })?;
    Ok(())
}
