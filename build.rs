//! Generates the tonic servers and clients and the prost messages of the Star Citizen
//! services from `proto/` with protox (pure Rust: no `protoc` on the build machine). The
//! same compiled descriptor set is embedded in the binary, so the dissectors decode what the
//! servers send with the very same schemas.

use std::path::PathBuf;

const FILES: &[&str] = &[
    "sc/diffusion.proto",
    "sc/login.proto",
    "sc/entitlement.proto",
    "sc/character.proto",
    "sc/push.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for f in FILES {
        println!("cargo:rerun-if-changed=proto/{f}");
    }
    let fds = protox::compile(FILES, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("sc_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Malformed request bodies are the client's fault: INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::servers::sc::codec::ScCodec")
        .compile_fds(fds)?;
    Ok(())
}
