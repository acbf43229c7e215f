//! `gamewire inspect FILE`: a capture as text, or as JSON lines for scripts.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use crate::capture::files::{self, OpenOptions};
use crate::capture::{PacketRef, StoreData};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The capture file (.gwcap, .sd.json or .pcapng).
    pub file: PathBuf,
    /// One JSON object per packet per line instead of the text listing.
    #[arg(long)]
    pub json: bool,
    /// Keep the good records of a file that has bad ones, and exit 0.
    #[arg(long)]
    pub skip_bad: bool,
}

/// How many leading bytes the text listing shows.
const PREVIEW_BYTES: usize = 16;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let opened = files::open(
        &args.file,
        &OpenOptions {
            skip_bad: args.skip_bad,
        },
    )?;
    let stdout = io::stdout().lock();
    let mut out = BufWriter::with_capacity(1 << 16, stdout);
    if args.json {
        write_json(&opened.data, &mut out)
    } else {
        write_text(
            &args.file.display().to_string(),
            opened.format.name(),
            &opened.data,
            &mut out,
        )
    }
    .context("writing the listing")?;
    out.flush().context("writing the listing")?;
    drop(out);
    Ok(super::report_warnings(&opened.warnings, args.skip_bad))
}

#[derive(Serialize)]
struct JsonPacket<'a> {
    id: u64,
    connection: String,
    connection_id: u64,
    server: String,
    direction: &'static str,
    size: usize,
    timestamp: String,
    label: Option<&'a str>,
    flags: Vec<&'static str>,
    hex: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_hex: Option<String>,
}

fn write_json(data: &StoreData, out: &mut impl Write) -> io::Result<()> {
    for id in data.time_order() {
        let Some(p) = data.packet(id) else { continue };
        let (client, server) = endpoints(data, &p);
        let record = JsonPacket {
            id: p.id.0,
            connection: client,
            connection_id: p.connection.0,
            server,
            direction: p.direction.as_str(),
            size: p.data.len(),
            timestamp: p.timestamp.to_rfc3339(),
            label: p.label,
            flags: p.flags.names(),
            hex: hex::encode(p.data),
            original_hex: p.original.map(hex::encode),
        };
        serde_json::to_writer(&mut *out, &record).map_err(io::Error::other)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn endpoints(data: &StoreData, p: &PacketRef<'_>) -> (String, String) {
    data.connection(p.connection)
        .map(|c| (c.client.to_string(), c.server.to_string()))
        .unwrap_or_default()
}

fn write_text(name: &str, format: &str, data: &StoreData, out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "{name}: {format}, {} connections, {} packets, {} bytes",
        data.connection_count(),
        data.packet_count(),
        data.raw_bytes()
    )?;
    if data.connection_count() == 0 {
        writeln!(out, "(no traffic in this capture)")?;
        return Ok(());
    }
    writeln!(out, "\nConnections")?;
    for c in data.connections() {
        write!(
            out,
            "  {:<5} {:<4} {} -> {}",
            c.id.to_string(),
            c.transport,
            c.client,
            if c.server == crate::capture::UNKNOWN_ADDR {
                "(server not recorded)".to_string()
            } else {
                c.server.to_string()
            }
        )?;
        if let Some(p) = &c.protocol {
            write!(out, "  protocol {p}")?;
        }
        if let Some(r) = &c.route {
            write!(out, "  route {r}")?;
        }
        if let Some(tls) = &c.tls {
            write!(out, "  tls")?;
            for (k, v) in [
                ("sni", &tls.sni),
                ("alpn", &tls.alpn),
                ("version", &tls.version),
            ] {
                if let Some(v) = v {
                    write!(out, " {k}={v}")?;
                }
            }
        }
        write!(out, "  opened {}", c.opened)?;
        if let Some(t) = c.closed {
            write!(out, "  closed {t}")?;
        }
        if let Some(r) = &c.close_reason {
            write!(out, " ({r})")?;
        }
        writeln!(out)?;
    }
    writeln!(out, "\nPackets")?;
    writeln!(
        out,
        "  {:<7} {:<30} {:<5} {:<3} {:>7}  {:<24} first bytes",
        "id", "time (UTC)", "conn", "dir", "size", "label"
    )?;
    for id in data.time_order() {
        let Some(p) = data.packet(id) else { continue };
        let shown = &p.data[..p.data.len().min(PREVIEW_BYTES)];
        let mut label = p.label.unwrap_or("-").to_string();
        if !p.flags.is_empty() {
            label = format!("{label} [{}]", p.flags);
        }
        writeln!(
            out,
            "  {:<7} {:<30} {:<5} {:<3} {:>7}  {:<24} {:<32} {}",
            p.id.0,
            p.timestamp.to_rfc3339(),
            p.connection.to_string(),
            p.direction.arrow(),
            p.data.len(),
            label,
            hex::encode(shown),
            crate::capture::ascii_preview(shown)
        )?;
    }
    Ok(())
}
