//! Generates messages for Rust: the public contract from `protos/` (the same files the
//! Python stubs come from) and the exchange's own store format from `proto/`. protox
//! parses them in Rust: no `protoc` is needed on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let contract = here.join("../protos");
    let private = here.join("proto");
    let files = [
        contract.join("spotex/v1/spotex.proto"),
        private.join("spotex/store/v1/store.proto"),
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let descriptors = protox::compile(&files, [&contract, &private])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
