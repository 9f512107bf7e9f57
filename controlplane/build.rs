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
        // gwctl prints messages as JSON; enum fields by name (api::pbjson).
        .type_attribute(".gateway.v1", "#[derive(serde::Serialize)]")
        .field_attribute(
            ".gateway.v1.ConfigStatus.state",
            r#"#[serde(serialize_with = "crate::api::pbjson::enforcement_state")]"#,
        )
        .field_attribute(
            ".gateway.v1.GetRequest.kind",
            r#"#[serde(serialize_with = "crate::api::pbjson::resource_kind")]"#,
        )
        .field_attribute(
            ".gateway.v1.FlowFilter.verdict",
            r#"#[serde(serialize_with = "crate::api::pbjson::verdicts")]"#,
        )
        .field_attribute(
            ".gateway.v1.Endpoint.kind",
            r#"#[serde(serialize_with = "crate::api::pbjson::endpoint_kind")]"#,
        )
        .field_attribute(".gateway.v1.Flow.type", r#"#[serde(serialize_with = "crate::api::pbjson::flow_event_type")]"#)
        .field_attribute(".gateway.v1.Flow.verdict", r#"#[serde(serialize_with = "crate::api::pbjson::verdict")]"#)
        .field_attribute(
            ".gateway.v1.LostEvent.source",
            r#"#[serde(serialize_with = "crate::api::pbjson::lost_event_source")]"#,
        )
        .field_attribute(
            ".gateway.v1.FlowAggregate.verdict",
            r#"#[serde(serialize_with = "crate::api::pbjson::verdict")]"#,
        )
        .compile_protos(&files, &[root])
        .map_err(|e| {
            format!("compiling the .proto files (is protoc installed? apt-get install protobuf-compiler): {e}")
        })?;
    Ok(())
}
