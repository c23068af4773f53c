//! YAML with a position on every value, and a serde `Deserializer` over it
//! that records every unknown key (with the nearest known one) instead of
//! stopping at the first, so `validate` can report all problems at once.

use std::cell::RefCell;
use std::fmt;

use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

/// A place in the file, counted from 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Located>),
    Map(Vec<(Located, Located)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Located {
    pub node: Node,
    pub pos: Pos,
}

impl Located {
    /// The value under `key`, when this is a mapping.
    pub fn get(&self, key: &str) -> Option<&Located> {
        match &self.node {
            Node::Map(entries) => entries.iter().find(|(k, _)| k.node == Node::Str(key.to_owned())).map(|(_, v)| v),
            _ => None,
        }
    }

    fn describe(&self) -> &'static str {
        match self.node {
            Node::Null => "nothing",
            Node::Bool(_) => "a boolean",
            Node::Int(_) => "an integer",
            Node::Float(_) => "a number",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

fn located(spanned: Spanned<Node>) -> Located {
    Located { node: spanned.value, pos: Pos { line: spanned.referenced.line(), column: spanned.referenced.column() } }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::Float(v as f64), Node::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(located(item));
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Node>>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            entries.push((located(key), located(value)));
        }
        Ok(Node::Map(entries))
    }
}

/// A YAML syntax error: no tree could be built.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    pub pos: Option<Pos>,
    pub message: String,
}

/// Parses YAML 1.2 with strict booleans (`yes` stays a string) and duplicate
/// keys refused.
pub fn parse(text: &str) -> Result<Located, SyntaxError> {
    let options = serde_saphyr::options! { strict_booleans: true };
    match serde_saphyr::from_str_with_options::<Spanned<Node>>(text, options) {
        Ok(root) => Ok(located(root)),
        Err(e) => Err(SyntaxError {
            pos: e.location().map(|l| Pos { line: l.line(), column: l.column() }),
            message: syntax_message(&e.to_string()),
        }),
    }
}

/// The parser's first line without its own position prefix or library hints
/// (we print the position ourselves).
fn syntax_message(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or("invalid YAML").trim();
    let mut message = first.strip_prefix("error:").unwrap_or(first).trim();
    if let Some(rest) = message.strip_prefix("line ")
        && let Some((_, after)) = rest.split_once(": ")
    {
        message = after;
    }
    let message = message.split(", set DuplicateKeyPolicy").next().unwrap_or(message);
    format!("invalid YAML: {message}")
}

/// A problem found while decoding: where, and what.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub pos: Pos,
    pub message: String,
    /// For an unknown key: the known one it is likely a misspelling of.
    meant: Option<&'static str>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeError {
    pos: Option<Pos>,
    message: String,
    /// A required field that is absent.
    missing: Option<&'static str>,
}

impl DeError {
    fn at(mut self, pos: Pos) -> Self {
        self.pos.get_or_insert(pos);
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError { pos: None, message: msg.to_string(), missing: None }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError { pos: None, message: format!("missing field `{field}`"), missing: Some(field) }
    }
}

/// Decodes a typed value from a node. Unknown keys are added to `problems`
/// and skipped; the first error of meaning or type ends the decode and is
/// returned (callers decode independent parts separately to see them all).
pub fn decode<T: DeserializeOwned>(node: &Located, problems: &mut Vec<Problem>) -> Result<T, Problem> {
    let sink = RefCell::new(Vec::new());
    let result = T::deserialize(NodeDe { node, sink: &sink });
    let mut found = sink.into_inner();
    let result = result.map_err(|e| {
        // A field missing because its key is misspelt is one mistake, told once: at the misspelling.
        match found.iter().position(|p| e.missing.is_some() && p.meant == e.missing) {
            Some(misspelt) => found.remove(misspelt),
            None => Problem { pos: e.pos.unwrap_or(node.pos), message: e.message, meant: None },
        }
    });
    problems.extend(found);
    result
}

struct NodeDe<'a> {
    node: &'a Located,
    sink: &'a RefCell<Vec<Problem>>,
}

impl<'a> NodeDe<'a> {
    fn child(&self, node: &'a Located) -> NodeDe<'a> {
        NodeDe { node, sink: self.sink }
    }

    fn wrong(&self, expected: &str) -> DeError {
        DeError {
            pos: Some(self.node.pos),
            message: format!("expected {expected}, found {}", self.node.describe()),
            missing: None,
        }
    }
}

const LOC_MARKER: &str = "$mdc_autoscaler::Loc";
const LIST_MARKER: &str = "$mdc_autoscaler::List";
/// A struct that may also be written as one scalar (`warn_before: 10m`):
/// its visitor is given the scalar, and a mapping's unknown keys are reported.
pub const OR_SCALAR: &str = "$mdc_autoscaler::OrScalar";

impl<'de> Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let pos = self.node.pos;
        match &self.node.node {
            Node::Null => visitor.visit_unit(),
            Node::Bool(b) => visitor.visit_bool(*b),
            Node::Int(i) => visitor.visit_i64(*i),
            Node::Float(f) => visitor.visit_f64(*f),
            Node::Str(s) => visitor.visit_str(s),
            Node::Seq(items) => visitor.visit_seq(SeqDe { items: items.iter(), sink: self.sink }),
            Node::Map(entries) => {
                visitor.visit_map(MapDe { entries: entries.iter(), value: None, fields: None, sink: self.sink })
            }
        }
        .map_err(|e| e.at(pos))
    }

    /// Scalars read as text where text is wanted: `tag: 2024`, `products: [4090]`.
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let pos = self.node.pos;
        match &self.node.node {
            Node::Int(i) => visitor.visit_string(i.to_string()),
            Node::Float(f) => visitor.visit_string(f.to_string()),
            Node::Bool(b) => visitor.visit_string(b.to_string()),
            Node::Str(s) => visitor.visit_str(s),
            _ => Err(self.wrong("a string")),
        }
        .map_err(|e| e.at(pos))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.node {
            Node::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        if name == LOC_MARKER {
            let pos = self.node.pos;
            return visitor.visit_seq(LocSeq { de: Some(self), step: 0, pos });
        }
        if name == LIST_MARKER {
            let pos = self.node.pos;
            let items = match &self.node.node {
                Node::Seq(items) => items.as_slice(),
                _ => std::slice::from_ref(self.node),
            };
            return visitor.visit_seq(SeqDe { items: items.iter(), sink: self.sink }).map_err(|e| e.at(pos));
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let pos = self.node.pos;
        match &self.node.node {
            Node::Str(_) | Node::Int(_) | Node::Float(_) | Node::Bool(_) if name == OR_SCALAR => {
                self.deserialize_any(visitor)
            }
            Node::Map(entries) => {
                visitor.visit_map(MapDe { entries: entries.iter(), value: None, fields: Some(fields), sink: self.sink })
            }
            _ => Err(self.wrong("a mapping")),
        }
        .map_err(|e| e.at(pos))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let pos = self.node.pos;
        let (tag, value) = match &self.node.node {
            Node::Str(s) => (s.as_str(), None),
            Node::Map(entries) if entries.len() == 1 => match &entries[0].0.node {
                Node::Str(s) => (s.as_str(), Some(&entries[0].1)),
                _ => return Err(self.wrong(&format!("one of {}", quoted(variants)))),
            },
            _ => return Err(self.wrong(&format!("one of {}", quoted(variants)))),
        };
        if !variants.contains(&tag) {
            return Err(DeError {
                pos: Some(pos),
                message: format!("`{tag}` is not one of {}{}", quoted(variants), suggestion(tag, variants)),
                missing: None,
            });
        }
        visitor.visit_enum(EnumDe { tag, value, de: self }).map_err(|e| e.at(pos))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf
        unit unit_struct seq tuple tuple_struct map identifier
    }
}

struct SeqDe<'a> {
    items: std::slice::Iter<'a, Located>,
    sink: &'a RefCell<Vec<Problem>>,
}

impl<'de> de::SeqAccess<'de> for SeqDe<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(node) => seed.deserialize(NodeDe { node, sink: self.sink }).map(Some),
            None => Ok(None),
        }
    }
}

struct MapDe<'a> {
    entries: std::slice::Iter<'a, (Located, Located)>,
    value: Option<&'a Located>,
    /// The struct's fields: other keys are reported and skipped.
    fields: Option<&'static [&'static str]>,
    sink: &'a RefCell<Vec<Problem>>,
}

impl<'de> de::MapAccess<'de> for MapDe<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        for (key, value) in self.entries.by_ref() {
            let text = match &key.node {
                Node::Str(s) => s.clone(),
                Node::Int(i) => i.to_string(),
                Node::Bool(b) => b.to_string(),
                _ => {
                    let message = "a key must be a plain word".into();
                    return Err(DeError { pos: Some(key.pos), message, missing: None });
                }
            };
            if let Some(fields) = self.fields
                && !fields.contains(&text.as_str())
            {
                self.sink.borrow_mut().push(Problem {
                    pos: key.pos,
                    message: format!("unknown key `{text}`{}", suggestion(&text, fields)),
                    meant: nearest(&text, fields),
                });
                continue;
            }
            self.value = Some(value);
            let key_de: StrDeserializer<'_, DeError> = text.as_str().into_deserializer();
            return seed.deserialize(key_de).map(Some).map_err(|e| e.at(key.pos));
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let node = self.value.take().expect("next_value after next_key");
        seed.deserialize(NodeDe { node, sink: self.sink })
    }
}

struct EnumDe<'a, 'b> {
    tag: &'b str,
    value: Option<&'a Located>,
    de: NodeDe<'a>,
}

impl<'de, 'a, 'b> de::EnumAccess<'de> for EnumDe<'a, 'b> {
    type Error = DeError;
    type Variant = VariantDe<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, VariantDe<'a>), DeError> {
        let tag: StrDeserializer<'_, DeError> = self.tag.into_deserializer();
        let variant = seed.deserialize(tag)?;
        Ok((variant, VariantDe { value: self.value, de: self.de }))
    }
}

struct VariantDe<'a> {
    value: Option<&'a Located>,
    de: NodeDe<'a>,
}

impl<'de> de::VariantAccess<'de> for VariantDe<'_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.value {
            None | Some(Located { node: Node::Null, .. }) => Ok(()),
            Some(_) => Err(self.de.wrong("a plain word")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        match self.value {
            Some(node) => seed.deserialize(self.de.child(node)),
            None => Err(self.de.wrong("settings under the name")),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Some(node) => self.de.child(node).deserialize_any(visitor),
            None => Err(self.de.wrong("a list under the name")),
        }
    }

    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Some(node) => self.de.child(node).deserialize_struct("", fields, visitor),
            None => Err(self.de.wrong("settings under the name")),
        }
    }
}

/// Hands a [`Loc`] its position, then its value.
struct LocSeq<'a> {
    de: Option<NodeDe<'a>>,
    step: u8,
    pos: Pos,
}

impl<'de> de::SeqAccess<'de> for LocSeq<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        self.step += 1;
        match self.step {
            1 => seed.deserialize(self.pos.line.into_deserializer()).map(Some),
            2 => seed.deserialize(self.pos.column.into_deserializer()).map(Some),
            3 => seed.deserialize(self.de.take().expect("value once")).map(Some),
            _ => Ok(None),
        }
    }
}

/// A value with the place it was written, for checks of meaning that must
/// point at the line (a time zone, a cron expression, a price cap).
#[derive(Clone, Debug, PartialEq)]
pub struct Loc<T> {
    pub value: T,
    pub pos: Pos,
}

impl<T> Loc<T> {
    pub fn new(value: T) -> Self {
        Loc { value, pos: Pos::default() }
    }
}

impl<T: Default> Default for Loc<T> {
    fn default() -> Self {
        Loc::new(T::default())
    }
}

impl<T> std::ops::Deref for Loc<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> std::ops::DerefMut for Loc<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

/// Written as the value itself: the position is the parser's.
impl<T: schemars::JsonSchema> schemars::JsonSchema for Loc<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<T>()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Loc<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LocVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for LocVisitor<T> {
            type Value = Loc<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Loc<T>, A::Error> {
                let missing = || de::Error::custom("position");
                let line = seq.next_element()?.ok_or_else(missing)?;
                let column = seq.next_element()?.ok_or_else(missing)?;
                let value = seq.next_element()?.ok_or_else(missing)?;
                Ok(Loc { value, pos: Pos { line, column } })
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Loc<T>, D::Error> {
                T::deserialize(d).map(Loc::new)
            }
        }
        d.deserialize_newtype_struct(LOC_MARKER, LocVisitor(std::marker::PhantomData))
    }
}

/// One value or a list of them (`cluster: a` or `cluster: [a, b]`), keeping
/// each item's position.
#[derive(Clone, Debug, PartialEq)]
pub struct List<T>(pub Vec<T>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(Vec::new())
    }
}

impl<T> std::ops::Deref for List<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for List<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("List_of_{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let one = generator.subschema_for::<T>();
        schemars::json_schema!({ "anyOf": [one, { "type": "array", "items": one }] })
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ListVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
            type Value = List<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(List(items))
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<List<T>, D::Error> {
                T::deserialize(d).map(|one| List(vec![one]))
            }
        }
        d.deserialize_newtype_struct(LIST_MARKER, ListVisitor(std::marker::PhantomData))
    }
}

fn quoted(words: &[&str]) -> String {
    words.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(", ")
}

/// ` (did you mean `x`?)` when a known word is close enough.
pub fn suggestion(word: &str, known: &[&str]) -> String {
    nearest(word, known).map(|k| format!(" (did you mean `{k}`?)")).unwrap_or_default()
}

/// The known word `word` is likely a misspelling of.
fn nearest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = word.to_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&lower, &k.to_lowercase()), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(1) + 1)
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Idle {
        stop_after: String,
        #[serde(default)]
        #[allow(dead_code)]
        snapshot: bool,
        zone: Option<Loc<String>>,
        #[serde(default)]
        names: List<Loc<String>>,
    }

    #[test]
    fn unknown_keys_are_all_reported_with_suggestions() {
        let root = parse("stop_afer: 30m\nstop_after: 1h\nsnapshott: true\nzone: Asia/Shanghai\n").unwrap();
        let mut problems = Vec::new();
        let idle: Idle = decode(&root, &mut problems).unwrap();
        assert_eq!(idle.stop_after, "1h");
        assert_eq!(idle.zone.unwrap().pos, Pos { line: 4, column: 7 });
        let messages: Vec<_> = problems.iter().map(|p| format!("{}: {}", p.pos, p.message)).collect();
        assert_eq!(
            messages,
            [
                "1:1: unknown key `stop_afer` (did you mean `stop_after`?)",
                "3:1: unknown key `snapshott` (did you mean `snapshot`?)"
            ]
        );
    }

    #[test]
    fn one_or_many_keeps_positions() {
        let one: Idle = decode(&parse("stop_after: 1m\nnames: nb-*\n").unwrap(), &mut Vec::new()).unwrap();
        assert_eq!(one.names.iter().map(|n| (n.value.as_str(), n.pos.line)).collect::<Vec<_>>(), [("nb-*", 2)]);
        let many: Idle = decode(&parse("stop_after: 1m\nnames: [a, b]\n").unwrap(), &mut Vec::new()).unwrap();
        assert_eq!(many.names[1].pos, Pos { line: 2, column: 12 });
    }

    #[test]
    fn type_errors_point_at_the_value() {
        let root = parse("stop_after: 30m\nsnapshot: yes\n").unwrap();
        let err = decode::<Idle>(&root, &mut Vec::new()).unwrap_err();
        assert_eq!(err.pos, Pos { line: 2, column: 11 });
        assert!(err.message.contains("boolean"), "{}", err.message);
        let err = decode::<Idle>(&parse("snapshot: true\n").unwrap(), &mut Vec::new()).unwrap_err();
        assert!(err.message.contains("missing field `stop_after`"), "{}", err.message);
        // Missing because misspelt: one mistake, told once where it is.
        let mut problems = Vec::new();
        let err = decode::<Idle>(&parse("snapshot: true\nstop_aftr: 1m\n").unwrap(), &mut problems).unwrap_err();
        assert_eq!(err.pos, Pos { line: 2, column: 1 });
        assert_eq!(err.message, "unknown key `stop_aftr` (did you mean `stop_after`?)");
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert!(err.pos.is_some(), "{err:?}");
        let err = parse("a: [1, 2\n").unwrap_err();
        assert!(err.pos.is_some(), "{err:?}");
    }

    #[test]
    fn suggestions_only_when_close() {
        assert_eq!(suggestion("stop_afer", &["stop_after", "snapshot"]), " (did you mean `stop_after`?)");
        assert_eq!(suggestion("banana", &["stop_after", "snapshot"]), "");
    }
}
