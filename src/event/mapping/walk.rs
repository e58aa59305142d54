//! Reading only what a mapping asks for: one pass over a JSON record (or a Snowplow TSV line) that keeps
//! the values at the mapping's pointers and the members of the objects whose members become attributes,
//! borrowed from the payload, and skips every other value without building it.

use std::borrow::Cow;

use super::lexer::{LexError, Lexer};

/// A scalar value found in a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    /// A string, borrowed unless it had escapes.
    Text(Cow<'a, str>),
    /// An integer that fits i64.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// A bool.
    Flag(bool),
}

/// The pointers of a mapping as a tree of object keys: each node may keep its value in a slot, and may
/// collect its members as attributes.
#[derive(Debug, Clone, Default)]
pub struct PathTree {
    nodes: Vec<Node>,
    slots: usize,
    buckets: usize,
}

#[derive(Debug, Clone, Default)]
struct Node {
    children: Vec<(String, usize)>,
    /// `children` indexed by [`key_hash`], open-addressed, once there are more than [`SCANNED`]: most keys
    /// a record has are not the mapping's, and a probe or two rules them out without comparing them with
    /// every child.
    index: Vec<u16>,
    slot: Option<usize>,
    bucket: Option<usize>,
}

/// Up to this many children, a key is compared with each (length and first byte first), which costs less
/// than hashing it.
const SCANNED: usize = 8;

/// A free place in a node's index.
const FREE: u16 = u16::MAX;

/// A hash of a key's length and its first and last bytes: cheap to take, and distinct for nearly every
/// pair of keys one object has.
#[inline]
fn key_hash(name: &str) -> usize {
    let bytes = name.as_bytes();
    let (first, last) = (bytes.first().copied().unwrap_or(0), bytes.last().copied().unwrap_or(0));
    let mixed =
        (bytes.len() as u64 | u64::from(first) << 16 | u64::from(last) << 24).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 40) as usize
}

impl Node {
    /// The child named `name`, looked up in the index.
    fn probe(&self, name: &str) -> Option<usize> {
        let mask = self.index.len() - 1;
        let mut at = key_hash(name) & mask;
        loop {
            let (child, index) = self.children.get(usize::from(self.index[at]))?;
            if child == name {
                return Some(*index);
            }
            at = (at + 1) & mask;
        }
    }

    /// Adds a child and rebuilds the index, twice as large as the children or more.
    fn add_child(&mut self, name: &str, child: usize) {
        self.children.push((name.to_owned(), child));
        if self.children.len() <= SCANNED {
            return;
        }
        let size = (self.children.len() * 2).next_power_of_two().max(4);
        self.index = vec![FREE; size];
        for (position, (name, _)) in self.children.iter().enumerate() {
            let mut at = key_hash(name) & (size - 1);
            while self.index[at] != FREE {
                at = (at + 1) & (size - 1);
            }
            self.index[at] = position as u16;
        }
    }
}

/// The root node of every tree.
pub const ROOT: usize = 0;

impl PathTree {
    /// An empty tree: just the root.
    pub fn new() -> PathTree {
        PathTree { nodes: vec![Node::default()], slots: 0, buckets: 0 }
    }

    fn node_at(&mut self, path: &[String]) -> usize {
        let mut node = ROOT;
        for segment in path {
            node = match self.nodes[node].children.iter().find(|(name, _)| name == segment) {
                Some(&(_, child)) => child,
                None => {
                    self.nodes.push(Node::default());
                    let child = self.nodes.len() - 1;
                    self.nodes[node].add_child(segment, child);
                    child
                }
            };
        }
        node
    }

    /// The slot that will hold the scalar at `path`; the same path always gets the same slot.
    pub fn slot(&mut self, path: &[String]) -> usize {
        let node = self.node_at(path);
        *self.nodes[node].slot.get_or_insert_with(|| {
            self.slots += 1;
            self.slots - 1
        })
    }

    /// The bucket that will hold the scalar members of the object at `path`.
    pub fn bucket(&mut self, path: &[String]) -> usize {
        let node = self.node_at(path);
        *self.nodes[node].bucket.get_or_insert_with(|| {
            self.buckets += 1;
            self.buckets - 1
        })
    }

    /// The child of `node` named `name`.
    #[inline(always)]
    pub fn child(&self, node: usize, name: &str) -> Option<usize> {
        let node = &self.nodes[node];
        if !node.index.is_empty() {
            return node.probe(name);
        }
        let (length, first) = (name.len(), name.as_bytes().first());
        node.children
            .iter()
            .find(|(child, _)| child.len() == length && child.as_bytes().first() == first && child == name)
            .map(|&(_, child)| child)
    }

    /// The slot of `node`, if a pointer ends there.
    pub fn slot_of(&self, node: usize) -> Option<usize> {
        self.nodes[node].slot
    }

    /// An empty extraction sized for this tree.
    pub fn extraction<'a>(&self) -> Extraction<'a> {
        let members = if self.buckets == 0 { Vec::new() } else { Vec::with_capacity(16) };
        Extraction { slots: vec![None; self.slots], members }
    }
}

/// What one pass found: a value per slot, and the members of the collected objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Extraction<'a> {
    /// The scalar at each slot's pointer, if the record has one there (null counts as absent).
    pub slots: Vec<Option<Scalar<'a>>>,
    /// The (bucket, name, scalar) members of the collected objects, in record order: one list for all
    /// buckets, so that a record costs one allocation for them.
    pub members: Vec<(usize, Cow<'a, str>, Scalar<'a>)>,
}

/// How a wrapped record is read: the root member read as the root itself (Kafka Connect's `payload`), and
/// the envelope last seen beside it (its `schema`). A topic's records carry the same envelope until its
/// table changes, and one byte for byte equal to the last, already checked, is passed over by comparison
/// instead of read again.
#[derive(Debug, Default)]
pub struct Wrapper {
    /// The member read as the root.
    pub member: String,
    seen: std::sync::Mutex<Vec<u8>>,
}

impl Wrapper {
    /// Records wrapped in `member`.
    pub fn new(member: String) -> Wrapper {
        Wrapper { member, seen: std::sync::Mutex::default() }
    }
}

impl Clone for Wrapper {
    /// A copy starts with no envelope seen.
    fn clone(&self) -> Wrapper {
        Wrapper::new(self.member.clone())
    }
}

/// Walks one JSON text at `node`, filling `out`; a wrapped record is read through its `wrapper`. The whole
/// text is checked, skipped values included.
pub fn walk_json<'a>(
    text: &'a str,
    tree: &PathTree,
    node: usize,
    wrapper: Option<&Wrapper>,
    out: &mut Extraction<'a>,
) -> Result<(), LexError> {
    let mut walker = Walker { lexer: Lexer::new(text), tree, out, wrapper };
    walker.value(node, wrapper.map(|wrapper| wrapper.member.as_str()), 0)?;
    walker.lexer.end()
}

struct Walker<'a, 't, 'o> {
    lexer: Lexer<'a>,
    tree: &'t PathTree,
    out: &'o mut Extraction<'a>,
    wrapper: Option<&'t Wrapper>,
}

impl<'a> Walker<'a, '_, '_> {
    /// Walks the value at `node`; returns it if it is a scalar, so that a collecting parent can keep it.
    fn value(&mut self, node: usize, unwrap: Option<&str>, depth: usize) -> Result<Option<Scalar<'a>>, LexError> {
        match self.lexer.peek() {
            Some(b'{') => self.object(node, unwrap, depth).map(|()| None),
            Some(b'[') => self.array(node, depth).map(|()| None),
            _ => {
                let value = self.lexer.scalar()?;
                if let (Some(slot), Some(value)) = (self.tree.nodes[node].slot, &value) {
                    self.out.slots[slot] = Some(value.clone());
                }
                Ok(value)
            }
        }
    }

    /// A member of a collecting object that no pointer reads: kept if it is a scalar, skipped if not.
    fn leaf(&mut self, depth: usize) -> Result<Option<Scalar<'a>>, LexError> {
        match self.lexer.peek() {
            Some(b'{' | b'[') => self.lexer.skip(depth).map(|()| None),
            _ => self.lexer.scalar(),
        }
    }

    fn object(&mut self, node: usize, unwrap: Option<&str>, depth: usize) -> Result<(), LexError> {
        let tree = self.tree;
        if tree.nodes[node].children.is_empty() && tree.nodes[node].bucket.is_none() && unwrap.is_none() {
            return self.lexer.skip(depth);
        }
        if self.lexer.open(b'}', depth)? {
            return Ok(());
        }
        let bucket = tree.nodes[node].bucket;
        loop {
            let key = self.lexer.key()?;
            if unwrap == Some(key.as_ref()) {
                self.value(node, None, depth + 1)?;
            } else {
                match (tree.child(node, &key), bucket) {
                    // The envelope of a wrapped record; while another thread compares one, this one reads
                    // its own in full.
                    (None, None) if unwrap.is_some() => {
                        match self.wrapper.and_then(|wrapper| wrapper.seen.try_lock().ok()) {
                            Some(mut seen) => self.lexer.skip_seen(depth + 1, &mut seen)?,
                            None => self.lexer.skip(depth + 1)?,
                        }
                    }
                    (None, None) => self.lexer.skip(depth + 1)?,
                    (Some(child), None) => drop(self.value(child, None, depth + 1)?),
                    (child, Some(bucket)) => {
                        let value = match child {
                            Some(child) => self.value(child, None, depth + 1)?,
                            None => self.leaf(depth + 1)?,
                        };
                        if let Some(value) = value {
                            self.out.members.push((bucket, key, value));
                        }
                    }
                }
            }
            if !self.lexer.next(b'}')? {
                return Ok(());
            }
        }
    }

    fn array(&mut self, node: usize, depth: usize) -> Result<(), LexError> {
        if self.tree.nodes[node].children.is_empty() {
            return self.lexer.skip(depth);
        }
        if self.lexer.open(b']', depth)? {
            return Ok(());
        }
        let mut digits = itoa::Buffer::new();
        for index in 0usize.. {
            match self.tree.child(node, digits.format(index)) {
                Some(child) => drop(self.value(child, None, depth + 1)?),
                None => self.lexer.skip(depth + 1)?,
            }
            if !self.lexer.next(b']')? {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> Vec<String> {
        text.split('/').skip(1).map(str::to_owned).collect()
    }

    fn walk<'a>(tree: &PathTree, json: &'a str, unwrap: Option<&str>) -> Extraction<'a> {
        let wrapper = unwrap.map(|member| Wrapper::new(member.to_owned()));
        let mut out = tree.extraction();
        walk_json(json, tree, ROOT, wrapper.as_ref(), &mut out).unwrap_or_else(|err| panic!("{err}"));
        out
    }

    #[test]
    fn pointers_find_their_values_and_skip_the_rest() {
        let mut tree = PathTree::new();
        let url = tree.slot(&path("/properties/url"));
        let first = tree.slot(&path("/items/1/sku"));
        let user = tree.slot(&path("/userId"));
        let json = r#"{"context":{"ip":"1.2.3.4","deep":[[{"x":1}]]},"userId":"u\"1","items":[{"sku":"a"},{"sku":"b"}],
                      "properties":{"url":"https://x.io/pricing","n":3}}"#;
        let out = walk(&tree, json, None);
        assert_eq!(out.slots[url], Some(Scalar::Text(Cow::Borrowed("https://x.io/pricing"))));
        assert_eq!(out.slots[first], Some(Scalar::Text(Cow::Borrowed("b"))));
        assert_eq!(out.slots[user], Some(Scalar::Text(Cow::Owned("u\"1".to_owned()))));
    }

    #[test]
    fn a_collected_object_keeps_its_scalars_and_feeds_pointers_into_it() {
        let mut tree = PathTree::new();
        let bucket = tree.bucket(&path("/after"));
        let email = tree.slot(&path("/after/email"));
        let out = walk(&tree, r#"{"after":{"email":"a@b.io","size":250,"vip":true,"tags":["x"],"gone":null}}"#, None);
        assert_eq!(out.slots[email], Some(Scalar::Text(Cow::Borrowed("a@b.io"))));
        let names: Vec<&str> =
            out.members.iter().filter(|member| member.0 == bucket).map(|(_, name, _)| name.as_ref()).collect();
        assert_eq!(names, ["email", "size", "vip"]);
    }

    #[test]
    fn a_node_with_many_children_finds_each_through_its_index() {
        let mut tree = PathTree::new();
        let names: Vec<String> =
            (0..40).map(|index| format!("column_{index}")).chain(["a".into(), "".into()]).collect();
        let slots: Vec<usize> = names.iter().map(|name| tree.slot(std::slice::from_ref(name))).collect();
        assert!(!tree.nodes[ROOT].index.is_empty(), "the root is indexed");
        for (name, slot) in names.iter().zip(&slots) {
            let child = tree.child(ROOT, name).unwrap_or_else(|| panic!("{name} not found"));
            assert_eq!(tree.slot_of(child), Some(*slot));
        }
        for absent in ["column_40", "column_", "b", "column_1x", "Column_1"] {
            assert_eq!(tree.child(ROOT, absent), None, "{absent}");
        }
    }

    #[test]
    fn an_envelope_seen_before_is_passed_over_and_a_changed_one_is_checked() {
        let mut tree = PathTree::new();
        let op = tree.slot(&path("/op"));
        let wrapper = Wrapper::new("payload".to_owned());
        let read = |json: &str| {
            let mut out = tree.extraction();
            walk_json(json, &tree, ROOT, Some(&wrapper), &mut out).map(|()| match &out.slots[op] {
                Some(Scalar::Text(text)) => Some(text.to_string()),
                _ => None,
            })
        };
        let schema = r#"{"type":"struct","fields":[{"field":"op","type":"string"}]}"#;
        for op in ["c", "u", "d"] {
            let record = format!(r#"{{"schema":{schema},"payload":{{"op":"{op}"}}}}"#);
            assert_eq!(read(&record), Ok(Some(op.to_owned())), "{record}");
        }
        assert_eq!(*wrapper.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner), schema.as_bytes());
        // The same envelope followed by more than its record allows, and a changed envelope that is not
        // JSON, are errors as they are without an envelope seen.
        assert!(read(&format!(r#"{{"schema":{schema}],"payload":{{"op":"c"}}}}"#)).is_err());
        assert!(read(r#"{"schema":{"type":"struct",},"payload":{"op":"c"}}"#).is_err());
        // A changed envelope is read in full, and remembered instead.
        let changed = r#"{"type":"struct","fields":[]}"#;
        assert!(read(&format!(r#"{{"schema":{changed},"payload":{{"op":"u"}}}}"#)).is_ok());
        assert_eq!(*wrapper.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner), changed.as_bytes());
    }

    #[test]
    fn an_unwrapped_member_is_read_as_the_root() {
        let mut tree = PathTree::new();
        let op = tree.slot(&path("/op"));
        let out = walk(&tree, r#"{"schema":{"type":"struct","fields":[]},"payload":{"op":"u"}}"#, Some("payload"));
        assert_eq!(out.slots[op], Some(Scalar::Text(Cow::Borrowed("u"))));
        let out = walk(&tree, r#"{"op":"c"}"#, Some("payload"));
        assert_eq!(out.slots[op], Some(Scalar::Text(Cow::Borrowed("c"))));
    }
}
