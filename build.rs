//! Compiles `proto/leadscore/v1/*.proto` with a pure-Rust protobuf compiler, so no `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/leadscore/v1/event.proto",
        "proto/leadscore/v1/output.proto",
        "proto/leadscore/v1/state.proto",
        "proto/leadscore/v1/internal.proto",
        "proto/leadscore/v1/account.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
