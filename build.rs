//! Generates the ONNX protobuf messages (`src/export/onnx.proto`, the official
//! file) as Rust with prost, using the protoc binary that ships inside the
//! `protoc-bin-vendored` crate, so the build needs no protoc installed.

fn main() {
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("protoc-bin-vendored has a protoc for this platform");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    config
        .compile_protos(&["src/export/onnx.proto"], &["src/export"])
        .expect("src/export/onnx.proto compiles");
    println!("cargo:rerun-if-changed=src/export/onnx.proto");
    println!("cargo:rerun-if-changed=build.rs");
}
