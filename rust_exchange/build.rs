//! Generates the contract's messages for Rust from `protos/`, the same files the Python
//! stubs come from. protox parses them in Rust: no `protoc` is needed on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../protos");
    let proto = root.join("spotex/v1/spotex.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let descriptors = protox::compile([&proto], [&root])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
