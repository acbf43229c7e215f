//! Generates the prost messages and the tonic servers and clients of the Star Citizen
//! services from `proto/` with protox (pure Rust: no `protoc` on the build machine). The
//! same compiled descriptor set is embedded in the binary, so the dissectors decode what the
//! servers send with the very same schemas.
//!
//! Three outputs, because the module arrows keep them apart: the messages belong to the
//! codec (`dissect::sc::pb`, used by servers, clients and samples alike), the service traits
//! to the servers and the service clients to the scripted clients. The latter two name the
//! messages through `extern_path`, so every message type exists once.

use std::path::PathBuf;

const FILES: &[&str] = &[
    "sc/diffusion.proto",
    "sc/login.proto",
    "sc/entitlement.proto",
    "sc/character.proto",
    "sc/push.proto",
];

/// Where `dissect::sc::pb` puts the generated messages, by package.
const MESSAGES: &str = "crate::dissect::sc::pb::sc";

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
    let dir = |name: &str| -> std::io::Result<PathBuf> {
        let d = out.join(name);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    };
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(false)
        .out_dir(dir("sc_messages")?)
        .compile_fds(fds.clone())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(false)
        .extern_path(".sc", MESSAGES)
        // Malformed request bodies are the client's fault: INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::servers::sc::codec::ScCodec")
        .out_dir(dir("sc_servers")?)
        .compile_fds(fds.clone())?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .extern_path(".sc", MESSAGES)
        .out_dir(dir("sc_clients")?)
        .compile_fds(fds)?;
    Ok(())
}
