//! A stateful fake of one DynamoDB table for `UpdateItem`, as an aws-smithy-mocks rule.
//!
//! It keeps items by key, evaluates each request's condition expression against the
//! stored item and, if it holds, applies the update expression: so a test sees what
//! DynamoDB would store after any order of deliveries, with the function's real
//! requests. Every applied update that changed the item is kept as a stream record
//! (the item after the write, as a `NEW_IMAGE` stream carries it); an update that
//! changes nothing makes no record, as on DynamoDB.
//!
//! The subset the counter functions use:
//! - conditions: `attribute_exists(p)`, `attribute_not_exists(p)`, `p op v` with
//!   `=`, `<>`, `<`, `<=`, `>`, `>=` (numbers numerically, strings byte-wise, a
//!   missing attribute or differing types compare false), `AND`, `OR`, `NOT`,
//!   parentheses;
//! - updates: `SET p = v, …` and `ADD p :n, …`; setting a path under a map that does
//!   not exist fails with `ValidationException`, as on DynamoDB;
//! - paths `#a.#b.c` (names through `ExpressionAttributeNames`), values `:v`; a
//!   name or value no expression uses fails with `ValidationException`, as on DynamoDB;
//! - an update that would make the item larger than 400 KB (DynamoDB's documented
//!   size rules, [`item_size`]) fails with DynamoDB's `ValidationException`;
//! - `GetItem` ([`FakeTable::get_rule`]) with a projection of top-level names.
//!
//! Shared by the counter-mapper and counter-aggregator tests (the aggregator's test
//! includes this file by path).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::update_item::{
    UpdateItemError, UpdateItemInput, UpdateItemOutput,
};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
use aws_smithy_mocks::{MockResponse, Rule, mock};
use aws_smithy_types::error::ErrorMetadata;

pub type Item = HashMap<String, AttributeValue>;

/// Runs once, before the request with this (1-based) number is evaluated: a
/// concurrent writer acting between two of the function's requests.
type Interleave = Box<dyn FnOnce(&mut BTreeMap<String, Item>) + Send>;

#[derive(Default)]
struct State {
    items: BTreeMap<String, Item>,
    stream: Vec<Item>,
    requests: usize,
    condition_failures: usize,
    interleave: Vec<(usize, Interleave)>,
    /// Keep no stream (a test of thousands of large items).
    no_stream: bool,
    largest_item: usize,
}

/// DynamoDB's item size limit.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

#[derive(Clone, Default)]
pub struct FakeTable {
    state: Arc<Mutex<State>>,
}

impl FakeTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// A table that keeps no stream records (items too many and too large to copy).
    pub fn without_stream() -> Self {
        let table = Self::default();
        table.state.lock().unwrap().no_stream = true;
        table
    }

    /// The `GetItem` rule that reads this table (every read is consistent).
    pub fn get_rule(&self) -> Rule {
        let state = Arc::clone(&self.state);
        mock!(aws_sdk_dynamodb::Client::get_item).then_compute_output(move |req| {
            let state = state.lock().unwrap();
            let key = req.key().cloned().unwrap_or_default();
            let item = state.items.get(&render_key(&key)).map(|item| {
                let Some(projection) = req.projection_expression() else {
                    return item.clone();
                };
                let names = req
                    .expression_attribute_names()
                    .cloned()
                    .unwrap_or_default();
                projection
                    .split(',')
                    .map(str::trim)
                    .map(|p| names.get(p).cloned().unwrap_or_else(|| p.to_owned()))
                    .filter_map(|name| item.get(&name).map(|v| (name, v.clone())))
                    .collect()
            });
            GetItemOutput::builder().set_item(item).build()
        })
    }

    /// The largest item size (bytes) any write left.
    pub fn largest_item(&self) -> usize {
        self.state.lock().unwrap().largest_item
    }

    /// Every stored item.
    pub fn items(&self) -> Vec<Item> {
        self.state.lock().unwrap().items.values().cloned().collect()
    }

    /// The `UpdateItem` rule that serves every request from this table.
    pub fn rule(&self) -> Rule {
        let state = Arc::clone(&self.state);
        mock!(aws_sdk_dynamodb::Client::update_item)
            .then_compute_response(move |req| state.lock().unwrap().update(req))
    }

    /// The stored item with these key attributes (string values), if any.
    pub fn item(&self, key: &[(&str, &str)]) -> Option<Item> {
        let key: Item = key
            .iter()
            .map(|(k, v)| ((*k).to_owned(), AttributeValue::S((*v).to_owned())))
            .collect();
        self.state
            .lock()
            .unwrap()
            .items
            .get(&render_key(&key))
            .cloned()
    }

    /// Stores `item` (keyed by the named key attributes) as if written earlier.
    pub fn put(&self, key_names: &[&str], item: Item) {
        let key: Item = key_names
            .iter()
            .map(|k| ((*k).to_owned(), item[*k].clone()))
            .collect();
        self.state
            .lock()
            .unwrap()
            .items
            .insert(render_key(&key), item);
    }

    /// Before request number `n` (1-based, counted from now on the table's total),
    /// change the stored items as another writer would.
    pub fn before_request(
        &self,
        n: usize,
        change: impl FnOnce(&mut BTreeMap<String, Item>) + Send + 'static,
    ) {
        let mut state = self.state.lock().unwrap();
        let at = state.requests + n;
        state.interleave.push((at, Box::new(change)));
    }

    /// The items after every write that changed them, in order.
    pub fn stream(&self) -> Vec<Item> {
        self.state.lock().unwrap().stream.clone()
    }

    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().requests
    }

    pub fn condition_failures(&self) -> usize {
        self.state.lock().unwrap().condition_failures
    }
}

/// The key of an item map as one string (every key attribute, sorted by name).
pub fn render_key(key: &Item) -> String {
    let mut names: Vec<&String> = key.keys().collect();
    names.sort();
    names
        .into_iter()
        .map(|n| format!("{n}={:?}", key[n]))
        .collect::<Vec<_>>()
        .join(",")
}

impl State {
    fn update(&mut self, req: &UpdateItemInput) -> MockResponse<UpdateItemOutput, UpdateItemError> {
        self.requests += 1;
        let now = self.requests;
        let due: Vec<Interleave> = {
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.interleave)
                .into_iter()
                .partition(|(at, _)| *at == now);
            self.interleave = later;
            due.into_iter().map(|(_, f)| f).collect()
        };
        for change in due {
            change(&mut self.items);
        }

        let key = req.key().cloned().unwrap_or_default();
        let names = req
            .expression_attribute_names()
            .cloned()
            .unwrap_or_default();
        let values = req
            .expression_attribute_values()
            .cloned()
            .unwrap_or_default();
        let expr = Expr {
            names: &names,
            values: &values,
        };
        if let Some(message) = unused_placeholders(req, &names, &values) {
            return MockResponse::Error(UpdateItemError::generic(
                ErrorMetadata::builder()
                    .code("ValidationException")
                    .message(message)
                    .build(),
            ));
        }
        let stored = self.items.get(&render_key(&key)).cloned();
        let current = stored.clone().unwrap_or_default();
        if let Some(condition) = req.condition_expression()
            && !expr.condition(condition, &current)
        {
            self.condition_failures += 1;
            return MockResponse::Error(UpdateItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder()
                    .message("The conditional request failed")
                    .build(),
            ));
        }
        let mut next = stored.unwrap_or_else(|| key.clone());
        if let Some(update) = req.update_expression()
            && let Err(message) = expr.apply(update, &mut next)
        {
            return MockResponse::Error(UpdateItemError::generic(
                ErrorMetadata::builder()
                    .code("ValidationException")
                    .message(message)
                    .build(),
            ));
        }
        let size = item_size(&next);
        if size > MAX_ITEM_BYTES {
            return MockResponse::Error(UpdateItemError::generic(
                ErrorMetadata::builder()
                    .code("ValidationException")
                    .message("Item size to update has exceeded the maximum allowed size")
                    .build(),
            ));
        }
        if Some(&next) != self.items.get(&render_key(&key)) {
            self.largest_item = self.largest_item.max(size);
            if !self.no_stream {
                self.stream.push(next.clone());
            }
            self.items.insert(render_key(&key), next);
        }
        MockResponse::Output(UpdateItemOutput::builder().build())
    }
}

/// An item's size by DynamoDB's documented rules: attribute names plus values;
/// strings by length, numbers by significant digits, maps and lists 3 bytes plus
/// one per element.
pub fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, v)| name.len() + value_size(v))
        .sum()
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => {
            let digits = n
                .trim_start_matches('-')
                .trim_start_matches('0')
                .trim_end_matches('0');
            digits.len().max(1).div_ceil(2) + 1
        }
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        AttributeValue::L(l) => 3 + l.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        _ => 0,
    }
}

/// DynamoDB refuses a request whose names or values no expression uses.
fn unused_placeholders(
    req: &UpdateItemInput,
    names: &HashMap<String, String>,
    values: &HashMap<String, AttributeValue>,
) -> Option<String> {
    let used: Vec<String> = [req.update_expression(), req.condition_expression()]
        .into_iter()
        .flatten()
        .flat_map(tokens)
        .filter_map(|t| match t {
            Token::Word(w) => Some(w),
            _ => None,
        })
        .flat_map(|w| w.split('.').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    let mut unused: Vec<&String> = names
        .keys()
        .chain(values.keys())
        .filter(|k| !used.contains(k))
        .collect();
    unused.sort();
    (!unused.is_empty()).then(|| format!("unused in expressions: {unused:?}"))
}

struct Expr<'a> {
    names: &'a HashMap<String, String>,
    values: &'a HashMap<String, AttributeValue>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    Comma,
    Op(&'static str),
    Word(String),
}

fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        match c {
            _ if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            ',' => {
                out.push(Token::Comma);
                i += 1;
            }
            '<' | '>' | '=' => {
                let op = match two.as_str() {
                    "<=" => "<=",
                    ">=" => ">=",
                    "<>" => "<>",
                    _ => match c {
                        '<' => "<",
                        '>' => ">",
                        _ => "=",
                    },
                };
                out.push(Token::Op(op));
                i += op.len();
            }
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !"(),<>=".contains(chars[i]) {
                    i += 1;
                }
                out.push(Token::Word(chars[start..i].iter().collect()));
            }
        }
    }
    out
}

impl Expr<'_> {
    fn path(&self, word: &str) -> Vec<String> {
        word.split('.')
            .map(|part| match part.strip_prefix('#') {
                Some(_) => self
                    .names
                    .get(part)
                    .unwrap_or_else(|| panic!("no name for {part}"))
                    .clone(),
                None => part.to_owned(),
            })
            .collect()
    }

    fn lookup<'i>(&self, word: &str, item: &'i Item) -> Option<&'i AttributeValue> {
        let path = self.path(word);
        let mut value = item.get(&path[0])?;
        for part in &path[1..] {
            value = value.as_m().ok()?.get(part)?;
        }
        Some(value)
    }

    fn operand(&self, word: &str, item: &Item) -> Option<AttributeValue> {
        if word.starts_with(':') {
            Some(
                self.values
                    .get(word)
                    .unwrap_or_else(|| panic!("no value for {word}"))
                    .clone(),
            )
        } else {
            self.lookup(word, item).cloned()
        }
    }

    fn condition(&self, text: &str, item: &Item) -> bool {
        let tokens = tokens(text);
        let mut pos = 0;
        let result = self.or(&tokens, &mut pos, item);
        assert_eq!(pos, tokens.len(), "unparsed condition rest in {text:?}");
        result
    }

    fn or(&self, t: &[Token], pos: &mut usize, item: &Item) -> bool {
        let mut result = self.and(t, pos, item);
        while matches!(t.get(*pos), Some(Token::Word(w)) if w == "OR") {
            *pos += 1;
            let rhs = self.and(t, pos, item);
            result = result || rhs;
        }
        result
    }

    fn and(&self, t: &[Token], pos: &mut usize, item: &Item) -> bool {
        let mut result = self.unary(t, pos, item);
        while matches!(t.get(*pos), Some(Token::Word(w)) if w == "AND") {
            *pos += 1;
            let rhs = self.unary(t, pos, item);
            result = result && rhs;
        }
        result
    }

    fn unary(&self, t: &[Token], pos: &mut usize, item: &Item) -> bool {
        match &t[*pos] {
            Token::Word(w) if w == "NOT" => {
                *pos += 1;
                !self.unary(t, pos, item)
            }
            Token::Open => {
                *pos += 1;
                let result = self.or(t, pos, item);
                assert_eq!(t[*pos], Token::Close);
                *pos += 1;
                result
            }
            Token::Word(f) if f == "attribute_exists" || f == "attribute_not_exists" => {
                let Token::Word(path) = &t[*pos + 2] else {
                    panic!("bad function call")
                };
                assert_eq!((&t[*pos + 1], &t[*pos + 3]), (&Token::Open, &Token::Close));
                *pos += 4;
                let exists = self.lookup(path, item).is_some();
                if f == "attribute_exists" {
                    exists
                } else {
                    !exists
                }
            }
            Token::Word(lhs) => {
                let (Token::Op(op), Token::Word(rhs)) = (&t[*pos + 1], &t[*pos + 2]) else {
                    panic!("bad comparison at {:?}", &t[*pos..])
                };
                *pos += 3;
                compare(self.operand(lhs, item), op, self.operand(rhs, item))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn apply(&self, text: &str, item: &mut Item) -> Result<(), String> {
        let tokens = tokens(text);
        let mut pos = 0;
        while pos < tokens.len() {
            let Token::Word(action) = &tokens[pos] else {
                panic!("expected SET or ADD in {text:?}")
            };
            pos += 1;
            loop {
                let Token::Word(path) = &tokens[pos] else {
                    panic!("expected a path in {text:?}")
                };
                match action.as_str() {
                    "SET" => {
                        assert_eq!(tokens[pos + 1], Token::Op("="));
                        let Token::Word(value) = &tokens[pos + 2] else {
                            panic!("expected a value in {text:?}")
                        };
                        let value = self
                            .operand(value, item)
                            .expect("SET from a missing attribute");
                        self.set(path, value, item)?;
                        pos += 3;
                    }
                    "ADD" => {
                        let Token::Word(value) = &tokens[pos + 1] else {
                            panic!("expected a value in {text:?}")
                        };
                        let add = number(&self.operand(value, item).unwrap());
                        let sum = self.lookup(path, item).map_or(0, number) + add;
                        self.set(path, AttributeValue::N(sum.to_string()), item)?;
                        pos += 2;
                    }
                    other => panic!("unsupported update action {other}"),
                }
                if tokens.get(pos) == Some(&Token::Comma) {
                    pos += 1;
                } else {
                    break;
                }
            }
        }
        Ok(())
    }

    fn set(&self, word: &str, value: AttributeValue, item: &mut Item) -> Result<(), String> {
        let path = self.path(word);
        let invalid = || {
            "The document path provided in the update expression is invalid for update".to_owned()
        };
        let (last, parents) = path.split_last().unwrap();
        let mut map = item;
        for part in parents {
            map = match map.get_mut(part) {
                Some(AttributeValue::M(inner)) => inner,
                _ => return Err(invalid()),
            };
        }
        map.insert(last.clone(), value);
        Ok(())
    }
}

fn number(value: &AttributeValue) -> i128 {
    match value {
        AttributeValue::N(n) => n.parse().expect("an integer"),
        other => panic!("not a number: {other:?}"),
    }
}

fn compare(lhs: Option<AttributeValue>, op: &str, rhs: Option<AttributeValue>) -> bool {
    use std::cmp::Ordering;
    let ordering = match (lhs, rhs) {
        (Some(AttributeValue::N(a)), Some(AttributeValue::N(b))) => {
            a.parse::<i128>().unwrap().cmp(&b.parse::<i128>().unwrap())
        }
        (Some(AttributeValue::S(a)), Some(AttributeValue::S(b))) => a.as_bytes().cmp(b.as_bytes()),
        _ => return false,
    };
    match op {
        "=" => ordering == Ordering::Equal,
        "<>" => ordering != Ordering::Equal,
        "<" => ordering == Ordering::Less,
        "<=" => ordering != Ordering::Greater,
        ">" => ordering == Ordering::Greater,
        ">=" => ordering != Ordering::Less,
        _ => unreachable!(),
    }
}
