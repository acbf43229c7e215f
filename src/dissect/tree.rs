//! The field tree every dissector produces: what the tree pane shows, what links it to the
//! hex pane (each node's byte range), and what editors change before re-encoding.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::ops::Range;

use serde::{Deserialize, Serialize};

/// The typed value of a field, kept at 24 bytes: bytes are a boxed slice (a `Vec`'s
/// capacity is of no use to a node), and text is a `CompactString`, which holds strings of
/// up to 24 bytes (most field values) inline, without an allocation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(untagged)]
pub enum Value {
    /// A node that only groups its children (a header, a record, a list).
    #[default]
    None,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Text(compact_str::CompactString),
    Bytes(#[serde(with = "hex_bytes")] Box<[u8]>),
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Box<[u8]>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s)
            .map(Vec::into_boxed_slice)
            .map_err(serde::de::Error::custom)
    }
}

impl Value {
    /// How the value reads in the tree pane when the dissector gives no other display.
    pub fn render(&self) -> String {
        match self {
            Value::None => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::UInt(u) => u.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Text(s) => format!("{s:?}"),
            Value::Bytes(b) => {
                const SHOWN: usize = 32;
                let mut s = hex::encode(&b[..b.len().min(SHOWN)]);
                if b.len() > SHOWN {
                    let _ = write!(s, "… ({} bytes)", b.len());
                }
                s
            }
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::UInt(u) => Some(*u),
            Value::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::UInt(u) => i64::try_from(*u).ok(),
            _ => None,
        }
    }
}

// The size the node is kept to (see `Node`); pointer width changes it, so 64-bit only.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Node>() <= 128 && std::mem::size_of::<Value>() <= 24);

/// A field of a decoded message.
///
/// Decoded captures hold millions of these, and protobuf decoding is bound by writing them,
/// so the struct is kept to two cache lines: the fields most nodes leave empty (display,
/// error, an owned kind) share one optional box, reached through accessors.
#[derive(Clone, Default)]
pub struct Node {
    pub name: Cow<'static, str>,
    pub value: Value,
    /// Bytes of the message this field occupies; `start == end` for a field with no bytes.
    pub range: Range<usize>,
    pub children: Vec<Node>,
    /// Not on the wire: computed, reassembled or checked by the dissector.
    pub derived: bool,
    /// A protocol's own number for the field (protobuf field number, packet id), kept for
    /// re-encoding. 32 bits hold every protocol's numbers (protobuf's are below 2^29).
    pub tag: Option<u32>,
    /// The kind when it is a static string, as nearly all are; an owned one is in `extra`.
    /// At most one of the two is set.
    kind: Option<&'static str>,
    extra: Option<Box<NodeExtra>>,
}

/// The parts of a node that most nodes leave empty, boxed so they cost one pointer there.
#[derive(Clone, Default)]
struct NodeExtra {
    display: Option<Box<str>>,
    error: Option<Box<str>>,
    /// A kind that is not a static string (HTTP/1 keeps a message's exact line endings and
    /// spacing this way).
    kind: Option<Box<str>>,
}

impl NodeExtra {
    fn is_empty(&self) -> bool {
        self.display.is_none() && self.error.is_none() && self.kind.is_none()
    }
}

/// Drops a node's children itself, skipping those that own no memory. Those are most of a
/// decoded tree (scalar fields, packed elements); the compiler's drop glue would call
/// through every one of them in turn, and freeing a tree was a sixth of protobuf decoding.
impl Drop for Node {
    fn drop(&mut self) {
        let children = self.children.as_mut_ptr();
        let len = self.children.len();
        // SAFETY: the length is set to zero first, so the vector's own drop (which follows
        // this one) frees only its buffer; each of the `len` initialised elements is then
        // dropped here exactly once, or skipped when it owns nothing (dropping it would be
        // a no-op). A panic in a child's drop would leak the rest, never drop one twice.
        unsafe {
            self.children.set_len(0);
            for i in 0..len {
                let child = children.add(i);
                if !(*child).owns_nothing() {
                    std::ptr::drop_in_place(child);
                }
            }
        }
    }
}

/// Compares what the fields say, not how they are stored: a kind set as a static string
/// equals the same kind set as an owned one, as it did when `kind` was a `Cow`.
impl PartialEq for Node {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.value == other.value
            && self.display() == other.display()
            && self.range == other.range
            && self.children == other.children
            && self.derived == other.derived
            && self.error() == other.error()
            && self.tag == other.tag
            && self.kind() == other.kind()
    }
}

/// The fields as they read through the accessors, in the order the struct had before
/// `display`, `error` and `kind` moved behind them.
impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("value", &self.value)
            .field("display", &self.display())
            .field("range", &self.range)
            .field("children", &self.children)
            .field("derived", &self.derived)
            .field("error", &self.error())
            .field("tag", &self.tag)
            .field("kind", &self.kind())
            .finish()
    }
}

impl Node {
    /// Whether dropping the node would free nothing.
    #[inline(always)]
    fn owns_nothing(&self) -> bool {
        matches!(self.name, Cow::Borrowed(_))
            && self.children.capacity() == 0
            && self.extra.is_none()
            && match &self.value {
                Value::Text(t) => !t.is_heap_allocated(),
                Value::Bytes(b) => b.is_empty(),
                Value::None | Value::Bool(_) | Value::Int(_) | Value::UInt(_) | Value::Float(_) => {
                    true
                }
            }
    }

    pub fn new(name: impl Into<Cow<'static, str>>, range: Range<usize>, value: Value) -> Self {
        Node {
            name: name.into(),
            value,
            range,
            children: Vec::new(),
            derived: false,
            tag: None,
            kind: None,
            extra: None,
        }
    }

    /// A node that groups children and spans them.
    pub fn group(name: impl Into<Cow<'static, str>>, range: Range<usize>) -> Self {
        Node::new(name, range, Value::None)
    }

    /// A node with a static name and kind and nothing boxed, as the protobuf decoder writes
    /// nearly every field: built in one expression, with no branch on the box, so it can be
    /// written straight into a vector's spare capacity.
    #[inline(always)]
    pub(crate) fn leaf(
        name: &'static str,
        range: Range<usize>,
        value: Value,
        tag: Option<u32>,
        kind: &'static str,
    ) -> Self {
        Node {
            name: Cow::Borrowed(name),
            value,
            range,
            children: Vec::new(),
            derived: false,
            tag,
            kind: Some(kind),
            extra: None,
        }
    }

    /// Set when the display differs from `value.render()` (units, enum names, decoded text).
    pub fn display(&self) -> Option<&str> {
        self.extra.as_deref().and_then(|e| e.display.as_deref())
    }

    pub fn set_display(&mut self, display: Option<String>) {
        self.set_extra(display, |e| &mut e.display);
    }

    pub fn with_display(mut self, display: impl Into<String>) -> Self {
        self.set_display(Some(display.into()));
        self
    }

    /// Set when the bytes are malformed; says what is wrong.
    pub fn error(&self) -> Option<&str> {
        self.extra.as_deref().and_then(|e| e.error.as_deref())
    }

    pub fn set_error(&mut self, error: Option<String>) {
        self.set_extra(error, |e| &mut e.error);
    }

    pub fn with_error(mut self, error: impl Into<String>) -> Self {
        self.set_error(Some(error.into()));
        self
    }

    /// A protocol's own type name for the field (protobuf `fixed32`, `sint64`, ...), kept for
    /// re-encoding.
    #[inline]
    pub fn kind(&self) -> Option<&str> {
        match self.kind {
            Some(k) => Some(k),
            None => self.extra.as_deref().and_then(|e| e.kind.as_deref()),
        }
    }

    /// Sets the kind; a borrowed (static) one is kept inline, an owned one in the box.
    #[inline]
    pub fn set_kind(&mut self, kind: Option<Cow<'static, str>>) {
        match kind {
            Some(Cow::Owned(k)) => {
                self.kind = None;
                self.set_extra(Some(k), |e| &mut e.kind);
            }
            Some(Cow::Borrowed(k)) => {
                self.kind = Some(k);
                // Only a node with a box can have an owned kind to drop; testing that here
                // keeps the common case (no box) a store.
                if self.extra.is_some() {
                    self.set_extra(None, |e| &mut e.kind);
                }
            }
            None => {
                self.kind = None;
                if self.extra.is_some() {
                    self.set_extra(None, |e| &mut e.kind);
                }
            }
        }
    }

    #[inline]
    pub fn with_kind(mut self, kind: impl Into<Cow<'static, str>>) -> Self {
        self.set_kind(Some(kind.into()));
        self
    }

    /// Sets one of the boxed fields: the box is made for the first value and dropped with
    /// the last, so a node without any keeps none.
    fn set_extra(
        &mut self,
        value: Option<String>,
        field: impl FnOnce(&mut NodeExtra) -> &mut Option<Box<str>>,
    ) {
        match value {
            Some(v) => *field(self.extra.get_or_insert_default()) = Some(v.into_boxed_str()),
            None => {
                if let Some(e) = self.extra.as_deref_mut() {
                    *field(e) = None;
                    if e.is_empty() {
                        self.extra = None;
                    }
                }
            }
        }
    }

    pub fn with_children(mut self, children: Vec<Node>) -> Self {
        self.children = children;
        self
    }

    pub fn with_tag(mut self, tag: u32) -> Self {
        self.tag = Some(tag);
        self
    }

    pub fn derived(mut self) -> Self {
        self.derived = true;
        self
    }

    pub fn push(&mut self, child: Node) {
        self.children.push(child);
    }

    /// The display text of the value.
    pub fn display_value(&self) -> Cow<'_, str> {
        match self.display() {
            Some(d) => Cow::Borrowed(d),
            None => Cow::Owned(self.value.render()),
        }
    }

    /// The first child with this name.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn child_mut(&mut self, name: &str) -> Option<&mut Node> {
        self.children.iter_mut().find(|c| c.name == name)
    }

    /// Follows a path of child names, e.g. `["header", "size"]`.
    pub fn find(&self, path: &[&str]) -> Option<&Node> {
        path.iter().try_fold(self, |node, name| node.child(name))
    }

    pub fn find_mut(&mut self, path: &[&str]) -> Option<&mut Node> {
        let mut node = self;
        for name in path {
            node = node.child_mut(name)?;
        }
        Some(node)
    }

    /// Every node, depth first, with its depth.
    pub fn walk(&self) -> Vec<(usize, &Node)> {
        let mut out = Vec::new();
        fn go<'a>(n: &'a Node, depth: usize, out: &mut Vec<(usize, &'a Node)>) {
            out.push((depth, n));
            for c in &n.children {
                go(c, depth + 1, out);
            }
        }
        go(self, 0, &mut out);
        out
    }

    /// The index path of the deepest node on the wire whose range covers `offset`: what a
    /// click on a byte in the hex pane selects.
    pub fn deepest_at(&self, offset: usize) -> Option<Vec<usize>> {
        if !self.range.contains(&offset) {
            return None;
        }
        let mut path = Vec::new();
        let mut node = self;
        'down: loop {
            for (i, c) in node.children.iter().enumerate() {
                if !c.derived && c.range.contains(&offset) {
                    path.push(i);
                    node = c;
                    continue 'down;
                }
            }
            return Some(path);
        }
    }

    /// Whether this node or any below it is marked as an error.
    pub fn has_error(&self) -> bool {
        self.error().is_some() || self.children.iter().any(Node::has_error)
    }

    /// Shifts every range by `by` bytes (a message's tree placed inside a larger buffer).
    pub fn offset_ranges(&mut self, by: usize) {
        self.range = self.range.start + by..self.range.end + by;
        for c in &mut self.children {
            c.offset_ranges(by);
        }
    }

    /// `{"name", "value", "range": [start, end], "children"}`, plus `display`, `derived`,
    /// `error` where set: the shape of `inspect --json --decode`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        obj.insert("name".into(), self.name.as_ref().into());
        obj.insert(
            "value".into(),
            serde_json::to_value(&self.value).unwrap_or(serde_json::Value::Null),
        );
        if let Some(d) = self.display() {
            obj.insert("display".into(), d.into());
        }
        obj.insert(
            "range".into(),
            serde_json::json!([self.range.start, self.range.end]),
        );
        if self.derived {
            obj.insert("derived".into(), true.into());
        }
        if let Some(e) = self.error() {
            obj.insert("error".into(), e.into());
        }
        obj.insert(
            "children".into(),
            self.children.iter().map(Node::to_json).collect(),
        );
        serde_json::Value::Object(obj)
    }

    /// Indented text, one node a line: `name: value [start..end]`.
    pub fn write_text(&self, out: &mut String, indent: usize) {
        for (depth, n) in self.walk() {
            let _ = write!(out, "{:width$}{}", "", n.name, width = indent + depth * 2);
            let value = n.display_value();
            if !value.is_empty() {
                let _ = write!(out, ": {value}");
            }
            let _ = write!(out, "  [{}..{}]", n.range.start, n.range.end);
            if n.derived {
                out.push_str(" (derived)");
            }
            if let Some(e) = n.error() {
                let _ = write!(out, "  ERROR: {e}");
            }
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The system allocator, counting the bytes each thread has live, so a test can see
    /// what dropping a tree gave back (tests run on threads of their own).
    struct Counting;

    thread_local! {
        static LIVE: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
    }

    fn count(bytes: usize, sign: isize) {
        // `try_with`: the allocator runs while a thread's locals are being torn down too.
        let _ = LIVE.try_with(|l| l.set(l.get() + sign * bytes as isize));
    }

    // SAFETY: every call is passed to the system allocator unchanged.
    unsafe impl std::alloc::GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
            count(layout.size(), 1);
            unsafe { std::alloc::System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
            count(layout.size(), -1);
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
            count(layout.size(), -1);
            count(new, 1);
            unsafe { std::alloc::System.realloc(ptr, layout, new) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    /// Dropping skips children that own nothing (see `impl Drop for Node`): the ones that do
    /// own memory, at any depth and in any position among those that do not, must still
    /// give all of it back, and none may be dropped twice (which the system allocator
    /// aborts on).
    #[test]
    fn dropping_a_tree_frees_all_it_owns_and_nothing_twice() {
        let live = || LIVE.with(std::cell::Cell::get);
        let before = live();
        {
            let long = "a text too long to be kept inline in the value".to_owned();
            let leaf = |i: usize| Node::new("[i]", i..i + 1, Value::UInt(i as u64));
            let mut packed = Node::group("packed", 0..40);
            packed.children = (0..40).map(leaf).collect();
            // Owning children between, before and after ones that own nothing.
            packed.children[0] = Node::new(format!("owned {}", 0), 0..1, Value::None);
            packed.children[17].value = Value::Text(long.as_str().into());
            packed.children[18].value = Value::Bytes(vec![1, 2, 3].into());
            packed.children[39].set_display(Some("shown".into()));
            let nested = Node::group("nested", 0..40)
                .with_kind(Cow::Owned("owned kind".to_owned()))
                .with_children(vec![leaf(1), packed, leaf(2)]);
            let tree = Node::group("message", 0..40)
                .with_error("bad")
                .with_children(vec![
                    leaf(0),
                    nested,
                    Node::new("t", 0..1, Value::Text("short".into())),
                ]);
            assert!(live() > before, "the tree allocated");
            drop(tree);
        }
        assert_eq!(
            live(),
            before,
            "bytes left allocated after the tree was dropped"
        );
    }

    fn sample() -> Node {
        Node::group("msg", 0..10).with_children(vec![
            Node::group("header", 0..4).with_children(vec![
                Node::new("a", 0..2, Value::UInt(1)),
                Node::new("b", 2..4, Value::UInt(2)),
            ]),
            Node::new("sum", 0..10, Value::UInt(3)).derived(),
            Node::new("body", 4..10, Value::Bytes(vec![0; 6].into())),
        ])
    }

    #[test]
    fn deepest_at_skips_derived_nodes() {
        let t = sample();
        assert_eq!(t.deepest_at(3), Some(vec![0, 1]));
        assert_eq!(t.deepest_at(5), Some(vec![2]));
        assert_eq!(t.deepest_at(10), None);
    }

    #[test]
    fn json_has_the_documented_shape() {
        let j = sample().to_json();
        assert_eq!(j["name"], "msg");
        assert_eq!(j["range"], serde_json::json!([0, 10]));
        assert_eq!(j["children"][0]["children"][1]["value"], 2);
        assert_eq!(j["children"][2]["value"], "000000000000");
        assert_eq!(j["children"][1]["derived"], true);
    }

    #[test]
    fn a_kind_reads_and_compares_the_same_static_or_owned() {
        let fixed = Node::group("h", 0..1).with_kind("\r\n");
        let owned = Node::group("h", 0..1).with_kind(String::from("\r\n"));
        assert_eq!(fixed.kind(), Some("\r\n"));
        assert_eq!(owned.kind(), Some("\r\n"));
        assert_eq!(fixed, owned);
        assert!(fixed.extra.is_none());

        let mut n = owned.with_kind("chunked");
        assert_eq!(n.kind(), Some("chunked"));
        assert!(
            n.extra.is_none(),
            "a static kind replaces the owned one and its box"
        );
        n.set_kind(Some(Cow::Owned("x|y".into())));
        n.set_kind(None);
        assert_eq!(n.kind(), None);
        assert!(n.extra.is_none());
    }

    #[test]
    fn boxed_fields_are_independent_and_the_box_goes_with_the_last() {
        let mut n = Node::new("v", 0..1, Value::UInt(1))
            .with_display("one")
            .with_error("bad")
            .with_kind(String::from("owned"));
        n.set_display(None);
        assert_eq!(
            (n.display(), n.error(), n.kind()),
            (None, Some("bad"), Some("owned"))
        );
        n.set_error(None);
        n.set_kind(None);
        assert!(n.extra.is_none());
        assert_eq!(n, Node::new("v", 0..1, Value::UInt(1)));
    }

    #[test]
    fn find_follows_names() {
        let t = sample();
        assert_eq!(
            t.find(&["header", "b"]).map(|n| n.range.clone()),
            Some(2..4)
        );
        assert!(t.find(&["header", "zz"]).is_none());
    }
}
