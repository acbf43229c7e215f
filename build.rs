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
    // (output folder, service traits, service clients)
    let outputs = [
        ("sc_messages", false, false),
        ("sc_servers", true, false),
        ("sc_clients", false, true),
    ];
    for (name, servers, clients) in outputs {
        let dir = out.join(name);
        std::fs::create_dir_all(&dir)?;
        let mut builder = tonic_prost_build::configure()
            .build_server(servers)
            .build_client(clients)
            .out_dir(dir);
        if servers || clients {
            builder = builder.extern_path(".sc", MESSAGES);
        }
        if servers {
            // Malformed request bodies are the client's fault: INVALID_ARGUMENT, not INTERNAL.
            builder = builder.codec_path("crate::servers::sc::codec::ScCodec");
        }
        builder.compile_fds(fds.clone())?;
    }
    Ok(())
}
