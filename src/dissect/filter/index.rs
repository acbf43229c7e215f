//! A flat, cache-friendly copy of a capture's decoded trees, built once per decode, that
//! dissected-field filters scan instead of chasing tree pointers.
//!
//! Walking `Node` trees costs several cache misses per packet (the message, its children,
//! each name and value live in separate allocations): about 0.6 µs a packet, three times the
//! budget for a million. Here every node is 16 bytes in one array, in packet order, with
//! interned names and values; a filter resolves its field names to name ids and decides each
//! distinct value once, so a pass is a sequential scan.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::capture::{PacketId, StoreData};
use crate::dissect::Node;
use crate::dissect::session::CaptureDecode;
use crate::dissect::tree::Value;

use super::PacketView;
use super::eval::{self, Found, Needle, NodeTest, ProtoField, Target};

const NONE: u32 = u32::MAX;
const MAIN_ROOT: u8 = 1;
const DERIVED_ROOT: u8 = 2;
const FIRST_OF_MAIN: u8 = 4;
/// Not a node: a message's label, its `value` an index into `labels`.
const LABEL: u8 = 8;

#[derive(Clone, Copy)]
struct Flat {
    name: u32,
    parent: u32,
    value: u32,
    flags: u8,
}

/// The decoded trees of a capture, flattened for fast filtering. Borrows the decode it was
/// built from (values are read from its nodes once per distinct value).
pub struct FieldIndex<'a> {
    pub(super) decode: &'a CaptureDecode,
    names: Vec<&'a str>,
    /// One node per distinct (value, display), standing for all nodes sharing them.
    values: Vec<&'a Node>,
    labels: Vec<&'a str>,
    nodes: Vec<Flat>,
    /// Packet `i`'s nodes are `nodes[starts[i]..starts[i + 1]]`.
    starts: Vec<u32>,
}

#[derive(PartialEq, Eq, Hash)]
enum ValueKey<'a> {
    None,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(u64),
    Text(&'a str),
    Bytes(&'a [u8]),
}

impl<'a> ValueKey<'a> {
    fn of(v: &'a Value) -> Self {
        match v {
            Value::None => ValueKey::None,
            Value::Bool(b) => ValueKey::Bool(*b),
            Value::Int(i) => ValueKey::Int(*i),
            Value::UInt(u) => ValueKey::UInt(*u),
            Value::Float(f) => ValueKey::Float(f.to_bits()),
            Value::Text(s) => ValueKey::Text(s),
            Value::Bytes(b) => ValueKey::Bytes(b),
        }
    }
}

struct Builder<'a> {
    names: Vec<&'a str>,
    name_ids: HashMap<&'a str, u32>,
    values: Vec<&'a Node>,
    value_ids: HashMap<(ValueKey<'a>, Option<&'a str>), u32>,
    labels: Vec<&'a str>,
    label_ids: HashMap<&'a str, u32>,
    nodes: Vec<Flat>,
}

impl<'a> Builder<'a> {
    fn label(&mut self, label: &'a str) {
        let labels = &mut self.labels;
        let value = *self.label_ids.entry(label).or_insert_with(|| {
            labels.push(label);
            (labels.len() - 1) as u32
        });
        // The name is the root's: a label never matches a path (paths skip LABEL entries).
        self.nodes.push(Flat {
            name: 0,
            parent: NONE,
            value,
            flags: LABEL,
        });
    }

    fn push(&mut self, n: &'a Node, parent: u32, flags: u8) {
        let name = match self.name_ids.get(&*n.name) {
            Some(&id) => id,
            None => {
                let id = self.names.len() as u32;
                self.names.push(&n.name);
                self.name_ids.insert(&n.name, id);
                id
            }
        };
        let key = (ValueKey::of(&n.value), n.display());
        let values = &mut self.values;
        let value = *self.value_ids.entry(key).or_insert_with(|| {
            values.push(n);
            (values.len() - 1) as u32
        });
        let me = self.nodes.len() as u32;
        self.nodes.push(Flat {
            name,
            parent,
            value,
            flags,
        });
        for (i, c) in n.children.iter().enumerate() {
            let first = if flags & MAIN_ROOT != 0 && i == 0 {
                FIRST_OF_MAIN
            } else {
                0
            };
            self.push(c, me, first);
        }
    }
}

impl<'a> FieldIndex<'a> {
    /// Flattens every message of `decode` (a second or so for a million packets).
    pub fn build(data: &StoreData, decode: &'a CaptureDecode) -> Self {
        let mut b = Builder {
            names: Vec::new(),
            name_ids: HashMap::new(),
            values: Vec::new(),
            value_ids: HashMap::new(),
            labels: Vec::new(),
            label_ids: HashMap::new(),
            nodes: Vec::new(),
        };
        let n = data.packet_count();
        let mut starts = Vec::with_capacity(n + 1);
        for i in 0..n {
            starts.push(b.nodes.len() as u32);
            for m in decode.of_packet(PacketId(i as u64)) {
                b.push(&m.message.tree, NONE, MAIN_ROOT);
                b.label(&m.message.label);
                for d in &m.message.derived {
                    b.push(&d.tree, NONE, DERIVED_ROOT);
                }
            }
        }
        starts.push(b.nodes.len() as u32);
        FieldIndex {
            decode,
            names: b.names,
            values: b.values,
            labels: b.labels,
            nodes: b.nodes,
            starts,
        }
    }

    /// Packets the index covers (the store may have grown since).
    pub fn packet_count(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    fn range(&self, id: PacketId) -> &[Flat] {
        let i = id.0 as usize;
        match (self.starts.get(i), self.starts.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.nodes[a as usize..b as usize],
            _ => &[],
        }
    }
}

/// A dissected-field test bound to one index for one run.
pub(super) struct BoundNode<'i, 'a> {
    index: &'i FieldIndex<'a>,
    field: &'i ProtoField,
    test: &'i NodeTest,
    kind: BoundKind,
    /// Per value id: 0 not yet decided, 1 fails, 2 passes. Threads decide values as they
    /// meet them; a race only decides a value twice, to the same answer.
    value_ok: Vec<AtomicU8>,
}

enum BoundKind {
    Message,
    /// Names passing the test, for a root or first child.
    NameOf {
        flag: u8,
        ok: Vec<bool>,
    },
    /// Per path: per segment, the name ids it matches; whether anchored.
    Paths(Vec<(bool, Vec<Vec<bool>>)>),
}

impl<'i, 'a> BoundNode<'i, 'a> {
    pub(super) fn new(
        index: &'i FieldIndex<'a>,
        field: &'i ProtoField,
        test: &'i NodeTest,
    ) -> Self {
        let names_where = |pred: &dyn Fn(&str) -> bool| -> Vec<bool> {
            index.names.iter().map(|n| pred(n)).collect()
        };
        let kind = match &field.target {
            Target::Message => BoundKind::Message,
            Target::RootName => BoundKind::NameOf {
                flag: MAIN_ROOT,
                ok: names_where(&|n| eval::node_test(test, Found::Name(n))),
            },
            Target::FirstChildName => BoundKind::NameOf {
                flag: FIRST_OF_MAIN,
                ok: names_where(&|n| eval::node_test(test, Found::Name(n))),
            },
            Target::Paths(paths) => BoundKind::Paths(
                paths
                    .iter()
                    .map(|p| {
                        let segs = p
                            .segments
                            .iter()
                            .map(|s| names_where(&|n| n.eq_ignore_ascii_case(s)))
                            .collect();
                        (p.anchored, segs)
                    })
                    .collect(),
            ),
        };
        let value_ok = match kind {
            BoundKind::Paths(_) if !matches!(test, NodeTest::Present) => {
                (0..index.values.len()).map(|_| AtomicU8::new(0)).collect()
            }
            _ => Vec::new(),
        };
        BoundNode {
            index,
            field,
            test,
            kind,
            value_ok,
        }
    }

    fn value_passes(&self, value: u32) -> bool {
        let Some(cell) = self.value_ok.get(value as usize) else {
            // Present: every value passes.
            return true;
        };
        match cell.load(Ordering::Relaxed) {
            1 => false,
            2 => true,
            _ => {
                let ok = self
                    .index
                    .values
                    .get(value as usize)
                    .is_some_and(|n| eval::node_test(self.test, Found::Node(n)));
                cell.store(if ok { 2 } else { 1 }, Ordering::Relaxed);
                ok
            }
        }
    }

    pub(super) fn eval(&self, id: PacketId, protocol: Option<&str>) -> bool {
        let nodes = self.index.range(id);
        if nodes.is_empty() || !self.field.ns.accepts(protocol) {
            return false;
        }
        match &self.kind {
            BoundKind::Message => true,
            BoundKind::NameOf { flag, ok } => nodes
                .iter()
                .any(|n| n.flags & flag != 0 && n.flags & LABEL == 0 && ok[n.name as usize]),
            BoundKind::Paths(paths) => {
                let all = &self.index.nodes;
                paths.iter().any(|(anchored, segs)| {
                    let Some((last, above)) = segs.split_last() else {
                        return false;
                    };
                    nodes.iter().any(|n| {
                        if n.flags & LABEL != 0
                            || !last[n.name as usize]
                            || !self.value_passes(n.value)
                        {
                            return false;
                        }
                        let mut parent = n.parent;
                        for seg in above.iter().rev() {
                            let Some(p) = all.get(parent as usize) else {
                                return false;
                            };
                            if !seg[p.name as usize] {
                                return false;
                            }
                            parent = p.parent;
                        }
                        // Anchored paths start at a root's child.
                        !*anchored
                            || all
                                .get(parent as usize)
                                .is_some_and(|p| p.flags & (MAIN_ROOT | DERIVED_ROOT) != 0)
                    })
                })
            }
        }
    }
}

/// Decides a cached yes/no: 0 not yet decided, 1 no, 2 yes. Threads decide values as they
/// meet them; a race only decides one twice, to the same answer.
fn cached(cell: &AtomicU8, decide: impl FnOnce() -> bool) -> bool {
    match cell.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let ok = decide();
            cell.store(if ok { 2 } else { 1 }, Ordering::Relaxed);
            ok
        }
    }
}

/// The text search bound to an index: each distinct value and label is searched once.
pub(super) struct BoundSearch<'i, 'a> {
    index: &'i FieldIndex<'a>,
    needle: &'i Needle,
    value_ok: Vec<AtomicU8>,
    label_ok: Vec<AtomicU8>,
}

impl<'i, 'a> BoundSearch<'i, 'a> {
    pub(super) fn new(index: &'i FieldIndex<'a>, needle: &'i Needle) -> Self {
        BoundSearch {
            index,
            needle,
            value_ok: (0..index.values.len()).map(|_| AtomicU8::new(0)).collect(),
            label_ok: (0..index.labels.len()).map(|_| AtomicU8::new(0)).collect(),
        }
    }

    pub(super) fn eval(&self, v: &PacketView<'_>) -> bool {
        if self.needle.is_empty() {
            return true;
        }
        if v.packet.label.is_some_and(|l| self.needle.in_str(l))
            || self.needle.in_bytes(v.packet.data)
        {
            return true;
        }
        let mut scratch = String::new();
        self.index.range(v.packet.id).iter().any(|n| {
            let i = n.value as usize;
            if n.flags & LABEL != 0 {
                self.label_ok.get(i).is_some_and(|cell| {
                    cached(cell, || {
                        self.index
                            .labels
                            .get(i)
                            .is_some_and(|l| self.needle.in_str(l))
                    })
                })
            } else {
                self.value_ok.get(i).is_some_and(|cell| {
                    cached(cell, || {
                        self.index
                            .values
                            .get(i)
                            .is_some_and(|node| self.needle.in_value(node, &mut scratch))
                    })
                })
            }
        })
    }
}
