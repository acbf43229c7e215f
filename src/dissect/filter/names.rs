//! Field names: the packet and connection fields the filter knows itself, and the protocol
//! fields the dissectors registered ([`crate::dissect::fields`]), read from the registry.

use std::sync::OnceLock;

use crate::capture::PacketFlags;
use crate::dissect::{FieldPath, FilterFields, FilterNamespace, Registry};

use super::FilterError;
use super::eval::{
    BoolField, BytesField, BytesTest, Expr, IntField, IntTest, Namespace, NodeTest, PathSpec,
    ProtoField, StrField, StrTest, Target,
};

/// What a field name refers to.
pub(super) enum Field {
    Int(IntField),
    Time,
    Str(StrField),
    Bytes(BytesField),
    Bool(BoolField),
    Dir,
    Node(ProtoField),
}

impl Field {
    pub(super) fn present(&self) -> Expr {
        match self {
            Field::Int(f) => Expr::Int(*f, IntTest::Present),
            Field::Time => Expr::Int(IntField::Time, IntTest::Present),
            Field::Str(f) => Expr::Str(*f, StrTest::Present),
            Field::Bytes(f) => Expr::Bytes(*f, BytesTest::Present),
            Field::Bool(f) => Expr::Bool(*f),
            Field::Dir => Expr::And(Vec::new()),
            Field::Node(p) => Expr::Node(p.clone(), NodeTest::Present),
        }
    }
}

/// The packet and connection fields, for error messages.
pub(super) const PACKET_FIELDS: &[&str] = &[
    "id", "size", "len", "time", "bytes", "original", "label", "dir", "flags", "edited",
    "injected", "dropped", "replayed", "error", "protocol",
];

pub(super) const CONN_FIELDS: &[&str] = &[
    "conn.id",
    "conn.port",
    "conn.client.port",
    "conn.server.port",
    "conn.client",
    "conn.server",
    "conn.client.ip",
    "conn.server.ip",
    "conn.route",
    "conn.protocol",
    "conn.transport",
    "conn.tls",
    "conn.tls.sni",
    "conn.tls.alpn",
    "conn.tls.version",
    "conn.tls.cipher",
    "conn.closed",
    "conn.close_reason",
];

/// What the field named by `segments` (as written) is, with `fields` the registrations.
pub(super) fn resolve(
    segments: &[String],
    pos: usize,
    fields: &FilterFields,
) -> Result<Field, FilterError> {
    let lower: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
    let names: Vec<&str> = lower.iter().map(String::as_str).collect();
    let rest = match names.as_slice() {
        ["packet" | "frame", rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    let packet = match rest {
        ["id"] => Some(Field::Int(IntField::PacketId)),
        ["size" | "len" | "length"] => Some(Field::Int(IntField::Size)),
        ["time" | "timestamp"] => Some(Field::Time),
        ["bytes" | "data"] => Some(Field::Bytes(BytesField::Data)),
        ["original"] => Some(Field::Bytes(BytesField::Original)),
        ["label"] => Some(Field::Str(StrField::Label)),
        ["dir" | "direction"] => Some(Field::Dir),
        ["flags"] => Some(Field::Bool(BoolField::AnyFlag)),
        ["error"] => Some(Field::Bool(BoolField::Error)),
        ["protocol" | "proto"] => Some(Field::Str(StrField::Protocol)),
        [flag] | ["flags", flag] => {
            PacketFlags::from_name(flag).map(|f| Field::Bool(BoolField::Flag(f)))
        }
        _ => None,
    };
    if let Some(f) = packet {
        return Ok(f);
    }
    if let ["conn" | "connection", rest @ ..] = names.as_slice() {
        let f = match rest {
            ["id"] => Field::Int(IntField::ConnId),
            ["port"] => Field::Int(IntField::Port),
            ["client", "port"] => Field::Int(IntField::ClientPort),
            ["server", "port"] => Field::Int(IntField::ServerPort),
            ["client"] => Field::Str(StrField::Client),
            ["server"] => Field::Str(StrField::Server),
            ["client", "ip" | "addr"] => Field::Str(StrField::ClientIp),
            ["server", "ip" | "addr"] => Field::Str(StrField::ServerIp),
            ["route"] => Field::Str(StrField::Route),
            ["protocol" | "proto"] => Field::Str(StrField::Protocol),
            ["transport"] => Field::Str(StrField::Transport),
            ["tls"] => Field::Bool(BoolField::Tls),
            ["tls", "sni"] | ["sni"] => Field::Str(StrField::Sni),
            ["tls", "alpn"] | ["alpn"] => Field::Str(StrField::Alpn),
            ["tls", "version"] => Field::Str(StrField::TlsVersion),
            ["tls", "cipher"] => Field::Str(StrField::Cipher),
            ["closed"] => Field::Bool(BoolField::Closed),
            ["close_reason" | "reason"] => Field::Str(StrField::CloseReason),
            _ => {
                let name = segments.join(".");
                return Err(FilterError::new(
                    pos,
                    format!(
                        "unknown connection field `{name}`;{} known: {}",
                        did_you_mean(&name, CONN_FIELDS.iter().copied()),
                        CONN_FIELDS.join(", ")
                    ),
                ));
            }
        };
        return Ok(f);
    }
    let ns_name = names[0];
    let Some((protocols, nested)) = namespace(fields, ns_name) else {
        let name = segments.join(".");
        return Err(FilterError::new(
            pos,
            format!(
                "unknown field `{name}`;{} packet fields: {}; connection fields: conn.*; protocol fields: {}.*; named protocol fields: {}",
                did_you_mean(&name, known_names(fields).into_iter()),
                PACKET_FIELDS.join(", "),
                namespace_names(fields).join(".*, "),
                fields
                    .unique()
                    .iter()
                    .map(|f| f.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    let path = &segments[1..];
    let target = match &names[1..] {
        [] => Target::Message,
        [one] => fields
            .paths(&format!("{ns_name}.{one}"))
            .map_or_else(|| search_path(path), |p| target_of(&p)),
        _ => search_path(path),
    };
    Ok(Field::Node(ProtoField {
        ns: Namespace {
            protocols,
            anywhere: nested && !path.is_empty(),
        },
        target,
    }))
}

/// Namespaces no dissector registers: JWTs are annotated inside other protocols' trees by
/// no dissector of their own, and `field` paths look in every protocol's trees.
const BUILTIN_NAMESPACES: [&str; 2] = ["jwt", "field"];

/// The protocols a namespace covers and whether its paths are searched everywhere.
fn namespace(fields: &FilterFields, name: &str) -> Option<(Vec<&'static str>, bool)> {
    match fields.namespace(name) {
        Some(FilterNamespace {
            protocols, nested, ..
        }) => Some((protocols.clone(), *nested)),
        None => BUILTIN_NAMESPACES
            .contains(&name)
            .then(|| (Vec::new(), true)),
    }
}

/// Every namespace name: the registered ones, then the built-in ones.
pub(super) fn namespace_names(fields: &FilterFields) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = fields.namespaces.iter().map(|n| n.name).collect();
    for b in BUILTIN_NAMESPACES {
        if !names.contains(&b) {
            names.push(b);
        }
    }
    names
}

/// Every name a filter may use as a field, for suggestions and completion.
pub(super) fn known_names(fields: &FilterFields) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = PACKET_FIELDS.to_vec();
    names.extend_from_slice(CONN_FIELDS);
    names.extend(namespace_names(fields));
    for name in fields.fields.iter().flat_map(|(_, f)| f.names()) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// The registrations of the process's registry ([`Registry::shared`]), gathered once.
pub(super) fn standard() -> &'static FilterFields {
    static CELL: OnceLock<FilterFields> = OnceLock::new();
    CELL.get_or_init(|| Registry::shared().filter_fields())
}

/// A path of node names as written: the first anywhere in the tree, the rest its children.
fn search_path(path: &[String]) -> Target {
    Target::Paths(vec![PathSpec {
        anchored: false,
        segments: path.to_vec(),
    }])
}

/// What a registered field's paths look for. `RootName` and `FirstChildName` stand alone
/// in a registration (the registration test checks it).
pub(super) fn target_of(paths: &[FieldPath]) -> Target {
    match paths {
        [FieldPath::RootName] => Target::RootName,
        [FieldPath::FirstChildName] => Target::FirstChildName,
        _ => Target::Paths(
            paths
                .iter()
                .filter_map(|p| match p {
                    FieldPath::Anchored(s) => Some(PathSpec {
                        anchored: true,
                        segments: s.iter().map(|s| s.to_string()).collect(),
                    }),
                    FieldPath::Anywhere(s) => Some(PathSpec {
                        anchored: false,
                        segments: vec![s.to_string()],
                    }),
                    FieldPath::RootName | FieldPath::FirstChildName => None,
                })
                .collect(),
        ),
    }
}

/// ` did you mean `a`, `b`?` for the known names a typo away from `name` (or starting with
/// it), closest first; empty when none is close.
fn did_you_mean(name: &str, known: impl Iterator<Item = &'static str>) -> String {
    let name = name.to_ascii_lowercase();
    let limit = if name.chars().count() < 4 { 1 } else { 2 };
    let mut close: Vec<(usize, &str)> = known
        .filter_map(|k| {
            let d = edit_distance(&name, k);
            let prefix = name.len() >= 2 && k.starts_with(name.as_str());
            (d <= limit || prefix).then_some((d, k))
        })
        .collect();
    close.sort_by_key(|(d, _)| *d);
    close.dedup_by_key(|(_, k)| *k);
    if close.is_empty() {
        return String::new();
    }
    let list: Vec<String> = close
        .iter()
        .take(5)
        .map(|(_, k)| format!("`{k}`"))
        .collect();
    format!(" did you mean {}?", list.join(", "))
}

/// Edits (insert, delete, substitute, swap two neighbours) that turn `a` into `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}
