//! A YAML tree that remembers where every node came from, so that validation errors
//! can point at the exact line and column of the offending value.

use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// 1-based line and column of a node's first character.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub line: usize,
    pub col: usize,
}

impl From<Marker> for Span {
    fn from(m: Marker) -> Self {
        Span {
            line: m.line(),
            col: m.col() + 1,
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A mapping's key and value nodes by key ([`Node::entries_by_key`]).
pub type Entries<'n> = std::collections::HashMap<String, (&'n Node, &'n Node)>;

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub span: Span,
    pub value: Value,
}

/// A syntax error in the YAML text itself.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub span: Span,
    pub message: String,
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The key node and value node of `key` in a mapping.
    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.is_key(key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// The entries of a mapping by key, for looking up many (`entry` scans the map).
    pub fn entries_by_key(&self) -> Entries<'_> {
        match &self.value {
            Value::Map(entries) => entries.iter().map(|(k, v)| (k.as_key(), (k, v))).collect(),
            _ => Default::default(),
        }
    }

    /// Whether this scalar, used as a mapping key, is `key` (without allocating for the
    /// usual string key: large pipelines look up thousands).
    fn is_key(&self, key: &str) -> bool {
        match &self.value {
            Value::Str(s) => s == key,
            _ => self.as_key() == key,
        }
    }

    /// The text of a scalar used as a mapping key.
    pub fn as_key(&self) -> String {
        match &self.value {
            Value::Str(s) => s.clone(),
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Seq(_) | Value::Map(_) => "<complex key>".into(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            // NaN and infinities have no JSON form; they become null and fail typed checks.
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.as_key(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// Follows a path of map keys and sequence indices; stops at the deepest node found.
    pub fn locate<'a>(&'a self, path: &[PathSeg]) -> &'a Node {
        let mut node = self;
        for seg in path {
            let next = match (seg, &node.value) {
                (PathSeg::Key(k), Value::Map(_)) => node.get(k),
                (PathSeg::Index(i), Value::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node
    }

    /// Like [`Node::locate`], but for a key: the span of the key itself when it exists.
    pub fn locate_key(&self, path: &[PathSeg], key: &str) -> Span {
        let parent = self.locate(path);
        parent.entry(key).map_or(parent.span, |(k, _)| k.span)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

impl fmt::Display for PathSeg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathSeg::Key(k) => write!(f, ".{k}"),
            PathSeg::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// Converts serde_path_to_error's path into ours.
pub fn path_from_serde(path: &serde_path_to_error::Path) -> Vec<PathSeg> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(PathSeg::Key(key.clone())),
            Segment::Enum { variant } => Some(PathSeg::Key(variant.clone())),
            Segment::Seq { index } => Some(PathSeg::Index(*index)),
            Segment::Unknown => None,
        })
        .collect()
}

/// Parses one YAML document. An empty document is `Null`.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut builder = Builder::default();
    Parser::new_from_str(text)
        .load(&mut builder, false)
        .map_err(|e| SyntaxError {
            span: (*e.marker()).into(),
            message: e.info().to_string(),
        })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.root.unwrap_or(Node {
        span: Span { line: 1, col: 1 },
        value: Value::Null,
    }))
}

enum Open {
    Seq(Node),
    /// A mapping, its pending key, and the keys seen so far (duplicate detection
    /// stays linear in the number of keys).
    Map(Node, Option<Node>, std::collections::HashSet<String>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    root: Option<Node>,
    error: Option<SyntaxError>,
}

impl Builder {
    fn push_value(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq(seq)) => {
                if let Value::Seq(items) = &mut seq.value {
                    items.push(node);
                }
            }
            Some(Open::Map(map, pending_key, seen)) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => {
                    if let Value::Map(entries) = &mut map.value {
                        let name = key.as_key();
                        if !seen.insert(name.clone()) && self.error.is_none() {
                            self.error = Some(SyntaxError {
                                span: key.span,
                                message: format!("duplicate key `{name}`"),
                            });
                        }
                        entries.push((key, node));
                    }
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let span = Span::from(mark);
        match ev {
            Event::Scalar(text, style, _, _) => {
                let value = resolve_scalar(text, style);
                self.push_value(Node { span, value });
            }
            Event::SequenceStart(..) => self.stack.push(Open::Seq(Node {
                span,
                value: Value::Seq(Vec::new()),
            })),
            Event::MappingStart(..) => self.stack.push(Open::Map(
                Node {
                    span,
                    value: Value::Map(Vec::new()),
                },
                None,
                Default::default(),
            )),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(Open::Seq(node) | Open::Map(node, _, _)) = self.stack.pop() {
                    self.push_value(node);
                }
            }
            Event::Alias(_) => {
                if self.error.is_none() {
                    self.error = Some(SyntaxError {
                        span,
                        message: "YAML aliases are not supported in pipeline files; repeat the value or use a param".into(),
                    });
                }
                self.push_value(Node {
                    span,
                    value: Value::Null,
                });
            }
            _ => {}
        }
    }
}

/// YAML 1.2 core schema: only plain scalars are typed; quoted ones stay strings.
fn resolve_scalar(text: String, style: TScalarStyle) -> Value {
    if style != TScalarStyle::Plain {
        return Value::Str(text);
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" => return Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::Int(i);
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Value::Int(i);
        }
    }
    let looks_numeric = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == '-' || c == '+' || c == '.');
    if looks_numeric {
        if let Ok(f) = text.parse::<f64>() {
            if f.is_finite() {
                return Value::Float(f);
            }
        }
    }
    Value::Str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_scalars_and_spans() {
        let doc = parse("a: 1\nb: '1'\nc: [x, 2.5, true]\nd:\n  e: ~\n").unwrap();
        assert_eq!(doc.get("a").unwrap().value, Value::Int(1));
        assert_eq!(doc.get("b").unwrap().value, Value::Str("1".into()));
        let c = doc.get("c").unwrap();
        assert_eq!(c.to_json(), serde_json::json!(["x", 2.5, true]));
        let e = doc.locate(&[PathSeg::Key("d".into()), PathSeg::Key("e".into())]);
        assert_eq!(e.span, Span { line: 5, col: 6 });
        assert_eq!(
            doc.locate_key(&[PathSeg::Key("d".into())], "e"),
            Span { line: 5, col: 3 }
        );
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.span.line, 3);
        assert!(err.message.contains("duplicate key `a`"));
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.span.line >= 1, "{err:?}");
    }
}
