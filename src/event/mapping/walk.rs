//! Reading only what a mapping asks for: one pass over a JSON record (or a Snowplow TSV line) that keeps
//! the values at the mapping's pointers and the members of the objects whose members become attributes,
//! borrowed from the payload, and skips every other value without building it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

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
    slot: Option<usize>,
    bucket: Option<usize>,
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
                    self.nodes[node].children.push((segment.clone(), child));
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
    pub fn child(&self, node: usize, name: &str) -> Option<usize> {
        self.nodes[node].children.iter().find(|(child, _)| child == name).map(|&(_, child)| child)
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

/// Walks one JSON value at `node`, filling `out`. `unwrap` names a root member read as the root itself
/// (Kafka Connect's `payload` next to its `schema`).
pub fn walk_json<'de, D: Deserializer<'de>>(
    deserializer: D,
    tree: &PathTree,
    node: usize,
    unwrap: Option<&str>,
    out: &mut Extraction<'de>,
) -> Result<(), D::Error> {
    NodeSeed { tree, node, unwrap, out }.deserialize(deserializer).map(drop)
}

/// Walks the value at one node; returns the value if it is a scalar, so that a collecting parent can keep it.
struct NodeSeed<'t, 'o, 'de> {
    tree: &'t PathTree,
    node: usize,
    unwrap: Option<&'t str>,
    out: &'o mut Extraction<'de>,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_, '_, 'de> {
    type Value = Option<Scalar<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> NodeSeed<'_, '_, 'de> {
    fn scalar<E>(self, value: Scalar<'de>) -> Result<Option<Scalar<'de>>, E> {
        if let Some(slot) = self.tree.nodes[self.node].slot {
            self.out.slots[slot] = Some(value.clone());
        }
        Ok(Some(value))
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_, '_, 'de> {
    type Value = Option<Scalar<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
        self.scalar(Scalar::Flag(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        self.scalar(Scalar::Int(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        match i64::try_from(value) {
            Ok(value) => self.scalar(Scalar::Int(value)),
            Err(_) => self.scalar(Scalar::Float(value as f64)),
        }
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        self.scalar(Scalar::Float(value))
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
        self.scalar(Scalar::Text(Cow::Borrowed(value)))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        self.scalar(Scalar::Text(Cow::Owned(value.to_owned())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let NodeSeed { tree, node, unwrap, out } = self;
        let bucket = tree.nodes[node].bucket;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if unwrap == Some(key.as_ref()) {
                map.next_value_seed(NodeSeed { tree, node, unwrap: None, out: &mut *out })?;
                continue;
            }
            let child = tree.child(node, &key);
            match (child, bucket) {
                (None, None) => {
                    map.next_value::<IgnoredAny>()?;
                }
                (Some(child), None) => {
                    map.next_value_seed(NodeSeed { tree, node: child, unwrap: None, out: &mut *out })?;
                }
                (child, Some(bucket)) => {
                    let seed = match child {
                        Some(child) => NodeSeed { tree, node: child, unwrap: None, out: &mut *out },
                        None => NodeSeed { tree, node: LEAF_ONLY, unwrap: None, out: &mut *out },
                    };
                    if let Some(value) = map.next_value_seed(ScalarOrWalk(seed))? {
                        out.members.push((bucket, key, value));
                    }
                }
            }
        }
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let NodeSeed { tree, node, out, .. } = self;
        let mut index = 0usize;
        loop {
            let child = if tree.nodes[node].children.is_empty() {
                None
            } else {
                let mut digits = itoa::Buffer::new();
                tree.child(node, digits.format(index))
            };
            let more = match child {
                Some(child) => seq.next_element_seed(NodeSeed { tree, node: child, unwrap: None, out: &mut *out })?,
                None => seq.next_element::<IgnoredAny>()?.map(|_| None),
            };
            if more.is_none() {
                return Ok(None);
            }
            index += 1;
        }
    }
}

/// Marks a member a collecting object keeps only if it is a scalar: nested objects and arrays are skipped.
const LEAF_ONLY: usize = usize::MAX;

/// A member of a collecting object: a scalar is kept, anything else is walked only if a pointer goes into it.
struct ScalarOrWalk<'t, 'o, 'de>(NodeSeed<'t, 'o, 'de>);

impl<'de> DeserializeSeed<'de> for ScalarOrWalk<'_, '_, 'de> {
    type Value = Option<Scalar<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        if self.0.node == LEAF_ONLY {
            return deserializer.deserialize_any(LeafVisitor);
        }
        deserializer.deserialize_any(self.0)
    }
}

/// Keeps a scalar; skips (and drops) an object or array.
struct LeafVisitor;

impl<'de> Visitor<'de> for LeafVisitor {
    type Value = Option<Scalar<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Flag(value)))
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Int(value)))
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        Ok(Some(i64::try_from(value).map_or(Scalar::Float(value as f64), Scalar::Int)))
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Float(value)))
    }
    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Text(Cow::Borrowed(value))))
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Text(Cow::Owned(value.to_owned()))))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

/// An object key, borrowed from the payload unless it had escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(value))
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(value.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> Vec<String> {
        text.split('/').skip(1).map(str::to_owned).collect()
    }

    fn walk<'a>(tree: &PathTree, json: &'a str, unwrap: Option<&str>) -> Extraction<'a> {
        let mut out = tree.extraction();
        let mut deserializer = serde_json::Deserializer::from_str(json);
        walk_json(&mut deserializer, tree, ROOT, unwrap, &mut out).unwrap_or_else(|err| panic!("{err}"));
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
    fn an_unwrapped_member_is_read_as_the_root() {
        let mut tree = PathTree::new();
        let op = tree.slot(&path("/op"));
        let out = walk(&tree, r#"{"schema":{"type":"struct","fields":[]},"payload":{"op":"u"}}"#, Some("payload"));
        assert_eq!(out.slots[op], Some(Scalar::Text(Cow::Borrowed("u"))));
        let out = walk(&tree, r#"{"op":"c"}"#, Some("payload"));
        assert_eq!(out.slots[op], Some(Scalar::Text(Cow::Borrowed("c"))));
    }
}
