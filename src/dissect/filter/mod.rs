//! The packet filter language and text search, shared by the GUI's packet table and
//! `gamewire inspect --filter`.
//!
//! ```text
//! fesl.txn == "NuLogin" && dir == c2s
//! conn.port == 18800 || (bytes contains "lkey" && !edited)
//! http.status >= 400 or grpc.status != 0
//! gp.command == login and not conn.tls
//! ```
//!
//! # Syntax
//! - `&&`/`and`, `||`/`or`, `!`/`not`, parentheses; `!` binds tightest, then `&&`, then `||`.
//! - Comparisons `==`, `!=`, `<`, `<=`, `>`, `>=`, `contains`, `matches` (a regular expression,
//!   Rust `regex` syntax; `(?i)` for case-insensitive).
//! - A field alone tests that it is present: a flag is set, a text is not empty, a number is
//!   not zero, a protocol field exists in a message of the packet.
//! - Values: strings in `"..."` or `'...'` with `\n \r \t \0 \\ \" \xHH \u{H}`; integers in
//!   decimal or `0x` hex; byte strings as `0a:1b:2c`; `true`/`false`; an unquoted word is a
//!   string (`dir == c2s`, `conn.route == fesl`, `conn.server.ip == 127.0.0.1`).
//! - `a != b` means `!(a == b)`: it holds for packets that lack the field.
//!
//! # Packet and connection fields
//! Unknown names here are errors when the filter is parsed.
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `id` | number | packet id |
//! | `size`, `len` | number | payload bytes |
//! | `time` | number | nanoseconds since 1970; compares with RFC 3339 strings too |
//! | `bytes` | bytes | the payload (`contains`, `==`, `matches`) |
//! | `original` | bytes | the bytes before an edit (absent unless edited) |
//! | `label` | text | the packet's label, or any of its decoded messages' labels |
//! | `dir` | direction | `c2s` or `s2c` |
//! | `flags`, `edited`, `injected`, `dropped`, `replayed` | flag | |
//! | `error` | flag | a message starting in the packet is malformed |
//! | `protocol` | text | the connection's decoded (or configured) protocol |
//! | `conn.id`, `conn.port`, `conn.client.port`, `conn.server.port` | number | `conn.port` is either endpoint |
//! | `conn.client`, `conn.server` | text | `ip:port` |
//! | `conn.client.ip`, `conn.server.ip` | text | |
//! | `conn.route`, `conn.protocol`, `conn.transport` | text | |
//! | `conn.tls`, `conn.closed` | flag | |
//! | `conn.tls.sni`, `conn.tls.alpn`, `conn.tls.version`, `conn.tls.cipher`, `conn.close_reason` | text | |
//!
//! # Protocol fields
//! `<namespace>.<path>`: a path of tree node names (case-insensitive; quote names with
//! spaces: `http."request line".method`). The first name may be a node anywhere in the
//! message tree, the rest are its children: `fesl.nuid`, `fesl.entitledGameFeatureWrappers.0.status`,
//! `sc.services.port`, `hytale.identityToken.claims.sub`. A field matches when any node on
//! the path satisfies the test, in any message that starts in the packet. Unknown paths
//! simply match nothing. The bare namespace (`fesl`) matches packets holding a message of
//! that protocol.
//!
//! Namespaces and named fields come from the dissectors' registrations
//! ([`crate::dissect::fields`], gathered by [`crate::dissect::Registry::filter_fields`]):
//! each dissector's name is a namespace covering its connections, joined by the namespaces
//! it names (`h2` and `http2` cover h2 and gRPC, `http` HTTP/1 too); `json` and `protobuf`
//! paths are searched in every protocol's trees (JSON bodies, protobuf payloads), as are
//! the built-in `jwt` (tokens inside any tree) and `field`. A one-name path that a
//! dissector registered (`fesl.txn`, `http.status`, `grpc.method`, ...) follows the
//! registered tree paths of every dissector that registered the name; the README lists
//! them. An unknown namespace is an error that suggests close names.
//!
//! Values compare by type: a number compares numerically with integer values and with text
//! that reads as a number (FESL values are text: `fesl.errorCode == 122` works); a string
//! equals a text value or a node's display (`fesl.type == TAG_SINGLE_CLIENT`).
//!
//! # Evaluation
//! [`Filter::parse`] compiles once; [`filter_packets`] runs it over a capture on every core.
//! Filters that use only packet and connection facts never look at decoded messages
//! ([`Filter::needs_decode`]), so they run before (or without) a decode. For large captures
//! build a [`FieldIndex`] once per decode and use [`filter_packets_indexed`]: dissected
//! fields and the text search then scan a flat array instead of walking trees (about 45 ms
//! rather than 600 ms for a million FESL packets on two cores; see `benches/filter.rs`).

mod eval;
mod index;
mod lexer;
mod names;
mod parser;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use crate::capture::{Connection, PacketId, PacketRef, StoreData};
use crate::dissect::{FieldPath, FilterFields, Message};

use super::session::CaptureDecode;
use super::stream::Decoded;

pub use index::FieldIndex;

/// A filter that does not parse: where and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at position {position})")]
pub struct FilterError {
    /// Char offset into the expression (0 = before the first character).
    pub position: usize,
    pub message: String,
}

impl FilterError {
    fn new(position: usize, message: impl Into<String>) -> Self {
        FilterError {
            position,
            message: message.into(),
        }
    }

    /// Two lines: the expression, and a caret under the error's position.
    pub fn caret(&self, expression: &str) -> String {
        let pad: String = expression
            .chars()
            .take(self.position)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        format!("{expression}\n{pad}^")
    }
}

/// A compiled filter.
#[derive(Clone, Debug)]
pub struct Filter {
    expr: eval::Expr,
    text: String,
    needs_messages: bool,
}

/// One packet as a filter sees it.
#[derive(Clone, Copy, Debug)]
pub struct PacketView<'a> {
    pub packet: PacketRef<'a>,
    pub connection: Option<&'a Connection>,
    /// The dissector the connection was decoded with.
    pub protocol: Option<&'a str>,
    /// The messages that start in this packet.
    pub messages: &'a [Decoded],
}

impl<'a> PacketView<'a> {
    /// The view of packet `id`, with its messages from `decode` when given.
    pub fn of(
        data: &'a StoreData,
        decode: Option<&'a CaptureDecode>,
        id: PacketId,
    ) -> Option<Self> {
        let packet = data.packet(id)?;
        Some(PacketView {
            packet,
            connection: data.connection(packet.connection),
            protocol: decode.and_then(|d| d.protocols.get(&packet.connection).copied()),
            messages: decode.map_or(&[], |d| d.of_packet(id)),
        })
    }
}

impl Filter {
    /// Compiles `text`. An empty (or all-blank) text is the filter that matches everything.
    /// Protocol fields come from [`crate::dissect::Registry::shared`]'s registrations.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        Filter::parse_with(text, names::standard())
    }

    /// [`Filter::parse`] with the fields of another registry
    /// ([`crate::dissect::Registry::filter_fields`]).
    pub fn parse_with(text: &str, fields: &FilterFields) -> Result<Filter, FilterError> {
        let expr = parser::parse(text, fields)?;
        Ok(Filter::from_expr(expr, text.to_string()))
    }

    /// The text search as a filter: `needle` case-insensitively in the packet's label, its
    /// bytes read as text, and its decoded messages' labels and values.
    pub fn search(needle: &str) -> Filter {
        Filter::from_expr(
            eval::Expr::Search(eval::Needle::new(needle)),
            format!("search {needle:?}"),
        )
    }

    /// Packets matching both (a filter and a search box together).
    pub fn and(self, other: Filter) -> Filter {
        let text = format!("({}) && ({})", self.text, other.text);
        Filter::from_expr(eval::Expr::And(vec![self.expr, other.expr]), text)
    }

    fn from_expr(expr: eval::Expr, text: String) -> Filter {
        Filter {
            needs_messages: expr.needs_messages(),
            expr,
            text,
        }
    }

    /// The text the filter was parsed from.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// True for the empty filter.
    pub fn is_match_all(&self) -> bool {
        matches!(&self.expr, eval::Expr::And(v) if v.is_empty())
    }

    /// Whether the filter reads decoded fields: without a decode such a filter matches no
    /// packet by them (a label or search still reads the packet's own label and bytes).
    pub fn needs_decode(&self) -> bool {
        self.expr.needs_decode() || matches!(self.expr, eval::Expr::Search(_))
    }

    pub fn matches(&self, view: &PacketView<'_>) -> bool {
        self.expr.eval(view)
    }

    /// Every name a field may start with, for completion in a filter box.
    pub fn field_names() -> Vec<&'static str> {
        names::known_names(names::standard())
    }
}

/// Whether a registered field path finds a node in `message` (its tree or a derived
/// buffer's), walked exactly as a filter walks it: the test that keeps every registration
/// true to its dissector's trees uses this.
pub fn path_resolves(path: &FieldPath, message: &Message) -> bool {
    eval::target_matches(&names::target_of(&[*path]), message, &|_| true)
}

/// Packets per unit of work: large enough that threads rarely meet, small enough that a
/// cancel is seen within a millisecond or so.
const BLOCK: usize = 16 * 1024;

/// The ids of the packets `filter` matches, in id order, using every core. `progress` is
/// called on the calling thread with the number of packets looked at so far. Returns `None`
/// when `cancel` is set before the end (the GUI sets it when the user types on).
pub fn filter_packets(
    data: &StoreData,
    decode: Option<&CaptureDecode>,
    filter: &Filter,
    cancel: &AtomicBool,
    progress: impl FnMut(usize),
) -> Option<Vec<PacketId>> {
    let n = data.packet_count();
    run_filter(
        data,
        decode,
        filter,
        n,
        |i| PacketId(i as u64),
        cancel,
        progress,
    )
}

/// Like [`filter_packets`] over the packets `ids` (say, the table's time order), keeping
/// their order.
pub fn filter_ids(
    data: &StoreData,
    decode: Option<&CaptureDecode>,
    ids: &[PacketId],
    filter: &Filter,
    cancel: &AtomicBool,
    progress: impl FnMut(usize),
) -> Option<Vec<PacketId>> {
    run_filter(
        data,
        decode,
        filter,
        ids.len(),
        |i| ids[i],
        cancel,
        progress,
    )
}

/// Text search over a capture: [`Filter::search`] run by [`filter_packets`].
pub fn search_packets(
    data: &StoreData,
    decode: Option<&CaptureDecode>,
    needle: &str,
    cancel: &AtomicBool,
    progress: impl FnMut(usize),
) -> Option<Vec<PacketId>> {
    filter_packets(data, decode, &Filter::search(needle), cancel, progress)
}

/// [`filter_packets`] with dissected fields read from `index` (built once per decode with
/// [`FieldIndex::build`]) rather than from the trees: several times faster on large
/// captures. Packets the index does not cover (appended since) match no dissected field.
pub fn filter_packets_indexed(
    data: &StoreData,
    index: &FieldIndex<'_>,
    filter: &Filter,
    cancel: &AtomicBool,
    progress: impl FnMut(usize),
) -> Option<Vec<PacketId>> {
    let n = data.packet_count();
    run_indexed(
        data,
        index,
        filter,
        n,
        |i| PacketId(i as u64),
        cancel,
        progress,
    )
}

/// [`filter_ids`] with dissected fields read from `index`.
pub fn filter_ids_indexed(
    data: &StoreData,
    index: &FieldIndex<'_>,
    ids: &[PacketId],
    filter: &Filter,
    cancel: &AtomicBool,
    progress: impl FnMut(usize),
) -> Option<Vec<PacketId>> {
    run_indexed(data, index, filter, ids.len(), |i| ids[i], cancel, progress)
}

fn run_indexed(
    data: &StoreData,
    index: &FieldIndex<'_>,
    filter: &Filter,
    n: usize,
    id_at: impl Fn(usize) -> PacketId + Sync,
    cancel: &AtomicBool,
    mut progress: impl FnMut(usize),
) -> Option<Vec<PacketId>> {
    if filter.is_match_all() {
        progress(n);
        return Some((0..n).map(&id_at).collect());
    }
    let bound = filter.expr.bind(index);
    let decode = index.decode;
    let protocols = protocol_table(data, Some(decode));
    let trees = filter.expr.needs_trees();
    let matcher = |id: PacketId| {
        let Some(packet) = data.packet(id) else {
            return false;
        };
        let view = PacketView {
            packet,
            connection: data.connection(packet.connection),
            protocol: protocols
                .get(packet.connection.0 as usize)
                .copied()
                .flatten(),
            messages: if trees { decode.of_packet(id) } else { &[] },
        };
        bound.eval(&view)
    };
    run(n, id_at, matcher, cancel, progress)
}

/// The decoded protocol of each connection, by index: a vector beats a hash lookup per
/// packet.
fn protocol_table<'d>(data: &StoreData, decode: Option<&'d CaptureDecode>) -> Vec<Option<&'d str>> {
    match decode {
        Some(d) => data
            .connections()
            .iter()
            .map(|c| d.protocols.get(&c.id).copied())
            .collect(),
        None => Vec::new(),
    }
}

fn run_filter(
    data: &StoreData,
    decode: Option<&CaptureDecode>,
    filter: &Filter,
    n: usize,
    id_at: impl Fn(usize) -> PacketId + Sync,
    cancel: &AtomicBool,
    mut progress: impl FnMut(usize),
) -> Option<Vec<PacketId>> {
    if filter.is_match_all() {
        progress(n);
        return Some((0..n).map(&id_at).collect());
    }
    let protocols = protocol_table(data, decode);
    let messages = decode.filter(|_| filter.needs_messages);
    let matcher = |id: PacketId| {
        let Some(packet) = data.packet(id) else {
            return false;
        };
        let view = PacketView {
            packet,
            connection: data.connection(packet.connection),
            protocol: protocols
                .get(packet.connection.0 as usize)
                .copied()
                .flatten(),
            messages: messages.map_or(&[], |d| d.of_packet(id)),
        };
        filter.matches(&view)
    };
    run(n, id_at, matcher, cancel, progress)
}

/// Runs `matcher` over `n` packets on every core, in blocks, keeping the order of `id_at`.
fn run(
    n: usize,
    id_at: impl Fn(usize) -> PacketId + Sync,
    matcher: impl Fn(PacketId) -> bool + Sync,
    cancel: &AtomicBool,
    mut progress: impl FnMut(usize),
) -> Option<Vec<PacketId>> {
    let block = |b: usize| -> Option<Vec<PacketId>> {
        let mut hits = Vec::new();
        for i in b * BLOCK..((b + 1) * BLOCK).min(n) {
            let id = id_at(i);
            if matcher(id) {
                hits.push(id);
            }
        }
        (!cancel.load(Ordering::Relaxed)).then_some(hits)
    };
    let blocks = n.div_ceil(BLOCK);
    let threads = std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .min(blocks);
    let mut results: Vec<Option<Vec<PacketId>>> = vec![None; blocks];
    if threads <= 1 {
        for (b, slot) in results.iter_mut().enumerate() {
            *slot = Some(block(b)?);
            progress(((b + 1) * BLOCK).min(n));
        }
    } else {
        let next = AtomicUsize::new(0);
        let (tx, rx) = mpsc::channel::<(usize, Option<Vec<PacketId>>)>();
        let cancelled = std::thread::scope(|s| {
            for _ in 0..threads {
                let tx = tx.clone();
                let (next, block) = (&next, &block);
                s.spawn(move || {
                    loop {
                        let b = next.fetch_add(1, Ordering::Relaxed);
                        if b >= blocks {
                            break;
                        }
                        let hits = block(b);
                        let stop = hits.is_none();
                        if tx.send((b, hits)).is_err() || stop {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut done = 0;
            let mut cancelled = false;
            for (b, hits) in rx {
                match hits {
                    Some(h) => {
                        results[b] = Some(h);
                        done += (((b + 1) * BLOCK).min(n)) - b * BLOCK;
                        progress(done);
                    }
                    None => {
                        cancelled = true;
                        // Stop the others at their next block.
                        next.store(blocks, Ordering::Relaxed);
                    }
                }
            }
            cancelled
        });
        if cancelled {
            return None;
        }
    }
    let total = results.iter().flatten().map(Vec::len).sum();
    let mut out = Vec::with_capacity(total);
    for hits in results {
        out.extend(hits?);
    }
    Some(out)
}
