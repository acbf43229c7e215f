//! `gamewire inspect FILE`: a capture as text, or as JSON lines for scripts.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use serde::Serialize;

use crate::capture::files::{self, OpenOptions};
use crate::capture::{PacketId, PacketRef, StoreData};
use crate::dissect::filter::{self, Filter};
use crate::dissect::protobuf::schema;
use crate::dissect::session::{CaptureDecode, decode_capture};
use crate::dissect::stream::Decoded;
use crate::dissect::{Context as DecodeContext, Node, Registry};

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
    /// Decode every message: its field tree as indented text, or a `tree` field with --json.
    #[arg(long)]
    pub decode: bool,
    /// Decode every connection with this protocol (implies --decode): fesl, gp, hytale, sc,
    /// protobuf, grpc, http, json.
    #[arg(long, value_name = "PROTOCOL")]
    pub decode_as: Option<String>,
    /// Another directory of .proto schemas to decode protobuf and gRPC with (repeatable);
    /// `proto/` in the working directory is always loaded when present.
    #[arg(long, value_name = "DIR")]
    pub proto: Vec<PathBuf>,
    /// The configuration whose `[decode]` section (schema directories, JWKS files, the
    /// Hytale referral secret) and issuer key decode the capture, as the engine's live
    /// decoders do; the defaults when the file does not exist (it is not created).
    #[arg(long, value_name = "FILE", default_value = crate::engine::config::DEFAULT_CONFIG_FILE)]
    pub config: PathBuf,
    /// Only the packets this filter expression matches, e.g. `fesl.txn == "NuLogin" && dir
    /// == c2s` (see the README's "Filters"). A bad expression exits with status 2.
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,
}

/// How many leading bytes the text listing shows.
const PREVIEW_BYTES: usize = 16;

/// Exit status of a filter that does not parse, apart from 1 (the file could not be read).
const BAD_FILTER: u8 = 2;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let registry = Registry::shared();
    let filter = match args.filter.as_deref().map(Filter::parse).transpose() {
        Ok(f) => f,
        Err(e) => {
            let expr = args.filter.as_deref().unwrap_or_default();
            eprintln!("error: --filter: {e}\n{}", e.caret(expr));
            return Ok(ExitCode::from(BAD_FILTER));
        }
    };
    if let Some(name) = &args.decode_as
        && registry.get(name).is_none()
    {
        anyhow::bail!(
            "--decode-as {name}: unknown protocol; choose one of: {}",
            registry.names().join(", ")
        );
    }
    let opened = files::open(
        &args.file,
        &OpenOptions {
            skip_bad: args.skip_bad,
        },
    )?;
    let decoding = args.decode || args.decode_as.is_some();
    // A filter on dissected fields needs the decode even when the trees are not printed.
    let filter_decodes = filter.as_ref().is_some_and(Filter::needs_decode);
    let ctx = if decoding || filter_decodes {
        decode_context(&args.config, &args.proto)?
    } else {
        DecodeContext::default()
    };
    let decode = (decoding || filter_decodes)
        .then(|| decode_capture(&registry, &ctx, &opened.data, args.decode_as.as_deref()));
    let keep = filter
        .as_ref()
        .map(|f| matching(&opened.data, decode.as_ref(), f));
    let decoded = decode.as_ref().filter(|_| decoding);
    let shown = Shown {
        keep: keep.as_deref(),
        filter: filter.as_ref().map(Filter::text),
    };
    let stdout = io::stdout().lock();
    let mut out = BufWriter::with_capacity(1 << 16, stdout);
    if args.json {
        write_json(&opened.data, decoded, &shown, &mut out)
    } else {
        write_text(
            &args.file.display().to_string(),
            opened.format.name(),
            &opened.data,
            decoded,
            &shown,
            &mut out,
        )
    }
    .context("writing the listing")?;
    out.flush().context("writing the listing")?;
    drop(out);
    Ok(super::report_warnings(&opened.warnings, args.skip_bad))
}

/// Which packets the listing shows.
struct Shown<'a> {
    /// Indexed by packet id; `None` shows every packet.
    keep: Option<&'a [bool]>,
    filter: Option<&'a str>,
}

impl Shown<'_> {
    fn shows(&self, id: PacketId) -> bool {
        self.keep
            .is_none_or(|k| k.get(id.0 as usize).copied().unwrap_or(false))
    }
}

fn matching(data: &StoreData, decode: Option<&CaptureDecode>, f: &Filter) -> Vec<bool> {
    let mut keep = vec![false; data.packet_count()];
    // Nothing cancels a CLI run, so the result is always there.
    let never = AtomicBool::new(false);
    for id in filter::filter_packets(data, decode, f, &never, |_| {}).unwrap_or_default() {
        if let Some(k) = keep.get_mut(id.0 as usize) {
            *k = true;
        }
    }
    keep
}

fn decode_context(config: &Path, extra_proto: &[PathBuf]) -> anyhow::Result<DecodeContext> {
    // A directory the user named must load; `./proto` and the built-in schemas are merged
    // in by the shared context, which tolerates a broken `./proto` with a warning.
    if !extra_proto.is_empty() {
        let dirs = schema::schema_dirs(Path::new("."), extra_proto);
        schema::load_schemas(&dirs).context("loading .proto schemas")?;
    }
    let mut config = crate::engine::config::Config::load_if_present(config)?;
    config.decode.proto_dirs.extend(extra_proto.iter().cloned());
    Ok(crate::engine::decoding::decode_context_for(&config, None))
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
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<&'static str>,
    /// The decoded tree, ranges in bytes of this packet: the message's own tree when one
    /// message starts here, else a `packet` node holding one tree per message.
    #[serde(skip_serializing_if = "Option::is_none")]
    tree: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<Vec<serde_json::Value>>,
}

fn write_json(
    data: &StoreData,
    decoded: Option<&CaptureDecode>,
    shown: &Shown<'_>,
    out: &mut impl Write,
) -> io::Result<()> {
    for id in data.time_order() {
        if !shown.shows(id) {
            continue;
        }
        let Some(p) = data.packet(id) else { continue };
        let (client, server) = endpoints(data, &p);
        let messages = decoded.map(|d| d.of_packet(p.id));
        let label = match messages {
            Some([first, ..]) => Some(first.message.label.as_str()),
            _ => p.label,
        };
        let record = JsonPacket {
            id: p.id.0,
            connection: client,
            connection_id: p.connection.0,
            server,
            direction: p.direction.as_str(),
            size: p.data.len(),
            timestamp: p.timestamp.to_rfc3339(),
            label,
            flags: p.flags.names(),
            hex: hex::encode(p.data),
            original_hex: p.original.map(hex::encode),
            protocol: decoded.and_then(|d| d.protocols.get(&p.connection).copied()),
            tree: messages.and_then(|m| packet_tree(m, p.data.len())),
            messages: messages.map(|m| m.iter().map(message_json).collect()),
        };
        serde_json::to_writer(&mut *out, &record).map_err(io::Error::other)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// The tree of a packet for `--json`: ranges are moved from message-relative to
/// packet-relative.
fn packet_tree(messages: &[Decoded], packet_len: usize) -> Option<serde_json::Value> {
    let placed = |m: &Decoded| -> Node {
        let mut tree = m.message.tree.clone();
        tree.offset_ranges(m.offset);
        tree
    };
    match messages {
        [] => None,
        [one] => Some(placed(one).to_json()),
        many => Some(
            Node::group("packet", 0..packet_len)
                .with_children(many.iter().map(placed).collect())
                .to_json(),
        ),
    }
}

fn message_json(m: &Decoded) -> serde_json::Value {
    serde_json::json!({
        "label": m.message.label,
        "offset": m.offset,
        "length": m.bytes.len(),
        "error": m.message.is_error(),
        "derived": m.message.derived.iter().map(|d| serde_json::json!({
            "name": d.name,
            "hex": hex::encode(&d.bytes),
            "tree": d.tree.to_json(),
        })).collect::<Vec<_>>(),
    })
}

fn endpoints(data: &StoreData, p: &PacketRef<'_>) -> (String, String) {
    data.connection(p.connection)
        .map(|c| (c.client.to_string(), c.server.to_string()))
        .unwrap_or_default()
}

fn write_text(
    name: &str,
    format: &str,
    data: &StoreData,
    decoded: Option<&CaptureDecode>,
    shown: &Shown<'_>,
    out: &mut impl Write,
) -> io::Result<()> {
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
        if let Some(d) = decoded {
            match d.protocols.get(&c.id) {
                Some(name) => write!(out, "  decoded as {name}")?,
                None => write!(out, "  (no dissector matched)")?,
            }
        }
        writeln!(out)?;
    }
    writeln!(out, "\nPackets")?;
    if let (Some(expr), Some(keep)) = (shown.filter, shown.keep) {
        writeln!(
            out,
            "  filter {expr}: {} of {} packets",
            keep.iter().filter(|&&k| k).count(),
            data.packet_count()
        )?;
    }
    writeln!(
        out,
        "  {:<7} {:<30} {:<5} {:<3} {:>7}  {:<24} first bytes",
        "id", "time (UTC)", "conn", "dir", "size", "label"
    )?;
    for id in data.time_order() {
        if !shown.shows(id) {
            continue;
        }
        let Some(p) = data.packet(id) else { continue };
        let preview = &p.data[..p.data.len().min(PREVIEW_BYTES)];
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
            hex::encode(preview),
            crate::capture::ascii_preview(preview)
        )?;
        if let Some(d) = decoded {
            write_messages(d.of_packet(p.id), out)?;
        }
    }
    Ok(())
}

fn write_messages(messages: &[Decoded], out: &mut impl Write) -> io::Result<()> {
    for m in messages {
        let mut text = String::new();
        writeln!(
            out,
            "      message at +{}: {}{}",
            m.offset,
            m.message.label,
            if m.message.is_error() {
                "  (ERROR)"
            } else {
                ""
            }
        )?;
        m.message.tree.write_text(&mut text, 8);
        for d in &m.message.derived {
            text.push_str(&format!("        {} ({} bytes):\n", d.name, d.bytes.len()));
            d.tree.write_text(&mut text, 10);
        }
        out.write_all(text.as_bytes())?;
    }
    Ok(())
}
