//! Blocks: typed, named documents of configuration and credentials (a
//! bucket, a database connection, a webhook). A block type is a JSON Schema;
//! fields the schema marks `writeOnly` are secrets, kept encrypted by the
//! store and shown as [`MASK`]. A field may name another block instead of
//! holding it (`{"$block": "aws-prod"}`), so a bucket can share credentials.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// What a secret is shown as.
pub const MASK: &str = "********";
/// The key of a reference to another block: `{"$block": "name"}`.
pub const BLOCK_REF: &str = "$block";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BlockType {
    /// `s3-bucket`, `postgres-connection`, …
    pub slug: String,
    pub name: String,
    pub description: String,
    /// JSON Schema of the block's data.
    #[schema(value_type = Object)]
    pub schema: Value,
}

impl BlockType {
    /// Where the secrets are: paths of field names, e.g. `["credentials", "secret_access_key"]`.
    pub fn secret_paths(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        walk_secrets(&self.schema, &self.schema, &mut Vec::new(), &mut out, 0);
        out
    }
}

fn walk_secrets(root: &Value, node: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>, depth: usize) {
    if depth > 8 {
        return;
    }
    let node = resolve(root, node);
    if node.get("writeOnly").and_then(Value::as_bool) == Some(true) {
        out.push(path.clone());
        return;
    }
    // An optional nested block is `anyOf: [{$ref}, {type: null}]`.
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(options) = node.get(key).and_then(Value::as_array) {
            for o in options {
                walk_secrets(root, o, path, out, depth + 1);
            }
        }
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            path.push(name.clone());
            walk_secrets(root, prop, path, out, depth + 1);
            path.pop();
        }
    }
}

/// Follows a local `$ref` (`#/$defs/Name` or `#/definitions/Name`).
fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
        Some(pointer) => root.pointer(pointer).unwrap_or(node),
        None => node,
    }
}

/// A saved block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BlockDocument {
    pub name: String,
    pub block_type: String,
    /// The fields; secrets in clear only when written or explicitly revealed.
    #[schema(value_type = Object)]
    pub data: Value,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

/// The value at `path`, if any (through objects only).
pub fn get_path<'a>(data: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(data, |v, k| v.get(k))
}

/// The value at `path`, for changing it.
pub fn get_path_mut<'a>(data: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(data, |v, k| v.get_mut(k))
}

/// `data` with every secret replaced by [`MASK`] (references to other
/// blocks are left as they are: they hold no secret).
pub fn mask(data: &Value, secrets: &[Vec<String>]) -> Value {
    let mut out = data.clone();
    for path in secrets {
        if let Some(v) = get_path_mut(&mut out, path) {
            if !v.is_null() && !is_block_ref(v) {
                *v = Value::String(MASK.into());
            }
        }
    }
    out
}

/// `{"$block": "name"}`.
/// Secret texts to keep out of captured output: the values at `secrets` in
/// (revealed) block data, 4 characters or longer, longest first so that a
/// secret containing another is masked whole.
pub fn secret_values(data: &Value, secrets: &[Vec<String>]) -> Vec<String> {
    let mut out: Vec<String> = secrets
        .iter()
        .filter_map(|p| get_path(data, p).and_then(Value::as_str))
        .filter(|s| s.len() >= 4 && *s != MASK)
        .map(str::to_string)
        .collect();
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// `text` with every occurrence of the `secrets` (longest first) masked.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), MASK);
        }
    }
    out
}

pub fn is_block_ref(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.len() == 1 && m.get(BLOCK_REF).is_some_and(Value::is_string))
}

/// The blocks `data` refers to, with where.
pub fn block_refs(data: &Value) -> Vec<(Vec<String>, String)> {
    fn walk(v: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
        if is_block_ref(v) {
            out.push((path.clone(), v[BLOCK_REF].as_str().unwrap_or_default().to_string()));
        } else if let Some(m) = v.as_object() {
            for (k, x) in m {
                path.push(k.clone());
                walk(x, path, out);
                path.pop();
            }
        }
    }
    let mut out = Vec::new();
    walk(data, &mut Vec::new(), &mut out);
    out
}

/// Checks a block's name and its data against its type: an object, every
/// required field present, no unknown fields, and each field of the type its
/// schema says (a field may instead refer to another block). The message
/// names the field.
pub fn validate_block(doc: &BlockDocument, t: &BlockType) -> Result<(), String> {
    let name_ok = !doc.name.is_empty()
        && doc.name.len() <= 255
        && doc.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !name_ok {
        return Err(format!("block name '{}': use 1 to 255 lowercase letters, digits and '-'", doc.name));
    }
    if doc.block_type != t.slug {
        return Err(format!("block '{}' is a {}, not a {}", doc.name, doc.block_type, t.slug));
    }
    check_object(&t.schema, &t.schema, &doc.data, "", 0)
}

/// Checks a JSON object against a JSON Schema of an object (required and
/// unknown fields, types, enums, nested objects): flows' parameters as well
/// as blocks. The message names the field.
pub fn check_against_schema(schema: &Value, data: &Value) -> Result<(), String> {
    check_object(schema, schema, data, "", 0)
}

fn check_object(root: &Value, schema: &Value, data: &Value, at: &str, depth: usize) -> Result<(), String> {
    let schema = resolve(root, schema);
    let Some(fields) = data.as_object() else {
        return Err(format!("{}: expected an object of fields", shown(at)));
    };
    let props = schema.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
    // A misspelt field explains the missing one, so it is reported first.
    if let Some(k) = fields.keys().find(|k| !props.contains_key(*k)) {
        let known: Vec<_> = props.keys().map(String::as_str).collect();
        return Err(format!("{}: unknown field (fields: {})", join(at, k), known.join(", ")));
    }
    for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
        let r = required.as_str().unwrap_or_default();
        if fields.get(r).is_none_or(Value::is_null) {
            return Err(format!("{}: missing", join(at, r)));
        }
    }
    for (k, v) in fields {
        check_value(root, &props[k], v, &join(at, k), depth + 1)?;
    }
    Ok(())
}

fn check_value(root: &Value, schema: &Value, v: &Value, at: &str, depth: usize) -> Result<(), String> {
    if depth > 8 || is_block_ref(v) || v.as_str() == Some(MASK) {
        return Ok(());
    }
    let schema = resolve(root, schema);
    if let Some(options) = schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Value::as_array) {
        let mut errors = Vec::new();
        for o in options {
            match check_value(root, o, v, at, depth + 1) {
                Ok(()) => return Ok(()),
                Err(e) => errors.push(e),
            }
        }
        // The telling error is from the option of the value's own kind,
        // which got further than "expected …".
        let kind_mismatch = format!("{at}: expected");
        let best = errors.iter().find(|e| !e.starts_with(&kind_mismatch)).or(errors.first());
        return Err(best.cloned().unwrap_or_else(|| format!("{at}: not an accepted value")));
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            let list: Vec<_> = allowed.iter().map(Value::to_string).collect();
            return Err(format!("{at}: {v} is not one of {}", list.join(", ")));
        }
    }
    if types.is_empty() {
        return Ok(());
    }
    let fits = types.iter().any(|t| match *t {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "null" => v.is_null(),
        "object" => v.is_object(),
        _ => true,
    });
    if !fits {
        return Err(format!("{at}: expected {}, got {v}", types.join(" or ")));
    }
    check_bounds(schema, v, at)?;
    if let (Some(items), Some(item_schema)) = (v.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check_value(root, item_schema, item, &format!("{at}[{i}]"), depth + 1)?;
        }
    }
    if v.is_object() && schema.get("properties").is_some() {
        return check_object(root, schema, v, at, depth + 1);
    }
    Ok(())
}

/// A number's `minimum`/`maximum` (and their exclusive forms), a string's
/// `minLength`/`maxLength`, an array's `minItems`/`maxItems`.
fn check_bounds(schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let bound = |key: &str| schema.get(key).filter(|b| b.is_number());
    if let Some(n) = v.as_f64() {
        let refused = |key: &str, fails: fn(f64, f64) -> bool, words: &str| match bound(key) {
            Some(b) if fails(n, b.as_f64().unwrap_or_default()) => Err(format!("{at}: must be {words} {b}, got {v}")),
            _ => Ok(()),
        };
        refused("minimum", |n, b| n < b, "at least")?;
        refused("maximum", |n, b| n > b, "at most")?;
        refused("exclusiveMinimum", |n, b| n <= b, "more than")?;
        refused("exclusiveMaximum", |n, b| n >= b, "less than")?;
    }
    let count = match v {
        Value::String(text) => Some((text.chars().count(), "minLength", "maxLength", "characters")),
        Value::Array(items) => Some((items.len(), "minItems", "maxItems", "items")),
        _ => None,
    };
    if let Some((len, min_key, max_key, unit)) = count {
        if let Some(min) = bound(min_key).and_then(Value::as_u64).filter(|m| (len as u64) < *m) {
            return Err(format!("{at}: must have at least {min} {unit}, has {len}"));
        }
        if let Some(max) = bound(max_key).and_then(Value::as_u64).filter(|m| (len as u64) > *m) {
            return Err(format!("{at}: must have at most {max} {unit}, has {len}"));
        }
    }
    Ok(())
}

fn join(at: &str, k: &str) -> String {
    if at.is_empty() {
        k.to_string()
    } else {
        format!("{at}.{k}")
    }
}

fn shown(at: &str) -> &str {
    if at.is_empty() {
        "the block's data"
    } else {
        at
    }
}

/// Replaces, in `data`, secrets sent back as [`MASK`] with the values
/// already stored (`previous`): a form that shows secrets masked can be
/// saved without retyping them.
pub fn keep_unchanged_secrets(data: &mut Value, previous: &Value, secrets: &[Vec<String>]) {
    for path in secrets {
        let unchanged = get_path(data, path).and_then(Value::as_str) == Some(MASK);
        if let (true, Some(old)) = (unchanged, get_path(previous, path)) {
            if let Some(slot) = get_path_mut(data, path) {
                *slot = old.clone();
            }
        }
    }
}

/// An object from `(field, value)` pairs, for building block data.
pub fn fields(pairs: impl IntoIterator<Item = (String, Value)>) -> Value {
    Value::Object(pairs.into_iter().collect::<Map<String, Value>>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bounds_of_numbers_strings_and_list_items_are_checked() {
        let schema = json!({"type": "object", "properties": {
            "month": {"type": "integer", "minimum": 1, "maximum": 12},
            "months": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 12}, "maxItems": 12},
            "ratio": {"type": "number", "exclusiveMinimum": 0},
            "code": {"type": "string", "minLength": 2, "maxLength": 3}
        }});
        let check = |data: Value| check_against_schema(&schema, &data);
        assert_eq!(check(json!({"month": 12, "months": [1, 2], "ratio": 0.5, "code": "ab"})), Ok(()));
        assert_eq!(check(json!({"month": 13})).unwrap_err(), "month: must be at most 12, got 13");
        assert_eq!(check(json!({"month": 0})).unwrap_err(), "month: must be at least 1, got 0");
        assert_eq!(check(json!({"months": [2, 13]})).unwrap_err(), "months[1]: must be at most 12, got 13");
        assert_eq!(check(json!({"months": ["x"]})).unwrap_err(), "months[0]: expected integer, got \"x\"");
        assert_eq!(check(json!({"ratio": 0})).unwrap_err(), "ratio: must be more than 0, got 0");
        assert_eq!(check(json!({"code": "abcd"})).unwrap_err(), "code: must have at most 3 characters, has 4");
        let many: Vec<u32> = (1..=13).map(|m| m.min(12)).collect();
        assert_eq!(check(json!({"months": many})).unwrap_err(), "months: must have at most 12 items, has 13");
    }

    fn bucket_type() -> BlockType {
        BlockType {
            slug: "s3-bucket".into(),
            name: "S3 bucket".into(),
            description: String::new(),
            schema: json!({
                "type": "object",
                "required": ["bucket"],
                "properties": {
                    "bucket": {"type": "string"},
                    "region": {"type": ["string", "null"]},
                    "port": {"type": "integer"},
                    "credentials": {"anyOf": [{"$ref": "#/$defs/AwsCredentials"}, {"type": "null"}]}
                },
                "$defs": {"AwsCredentials": {"type": "object", "required": ["access_key_id"], "properties": {
                    "access_key_id": {"type": "string"},
                    "secret_access_key": {"type": "string", "writeOnly": true}
                }}}
            }),
        }
    }

    fn doc(data: Value) -> BlockDocument {
        let now = Utc::now();
        BlockDocument { name: "taxi-lake".into(), block_type: "s3-bucket".into(), data, created: now, updated: now }
    }

    #[test]
    fn secrets_are_found_in_nested_types_and_masked() {
        let t = bucket_type();
        let paths = t.secret_paths();
        assert_eq!(paths, [vec!["credentials".to_string(), "secret_access_key".to_string()]]);
        let data = json!({"bucket": "b", "credentials": {"access_key_id": "AK", "secret_access_key": "s3cr3t"}});
        let masked = mask(&data, &paths);
        assert_eq!(masked["credentials"]["secret_access_key"], MASK);
        assert_eq!(masked["credentials"]["access_key_id"], "AK");
        let by_ref = json!({"bucket": "b", "credentials": {"$block": "aws-prod"}});
        assert_eq!(mask(&by_ref, &paths), by_ref, "a reference holds no secret");
        assert_eq!(block_refs(&by_ref), [(vec!["credentials".to_string()], "aws-prod".to_string())]);
    }

    #[test]
    fn data_is_checked_field_by_field() {
        let t = bucket_type();
        assert!(validate_block(&doc(json!({"bucket": "b", "region": null})), &t).is_ok());
        assert!(validate_block(&doc(json!({"bucket": "b", "credentials": {"$block": "aws"}})), &t).is_ok());
        let e = validate_block(&doc(json!({"region": "x"})), &t).unwrap_err();
        assert_eq!(e, "bucket: missing");
        let e = validate_block(&doc(json!({"bucket": "b", "bukket": 1})), &t).unwrap_err();
        assert!(e.starts_with("bukket: unknown field (fields: bucket, credentials, port, region)"), "{e}");
        let e = validate_block(&doc(json!({"bucket": "b", "port": "80"})), &t).unwrap_err();
        assert_eq!(e, "port: expected integer, got \"80\"");
        let e =
            validate_block(&doc(json!({"bucket": "b", "credentials": {"secret_access_key": "x"}})), &t).unwrap_err();
        assert!(e.contains("credentials.access_key_id: missing"), "{e}");
        let mut bad = doc(json!({"bucket": "b"}));
        bad.name = "Taxi Lake".into();
        assert!(validate_block(&bad, &t).unwrap_err().contains("lowercase"));
    }

    #[test]
    fn masked_secrets_sent_back_keep_their_stored_value() {
        let paths = bucket_type().secret_paths();
        let stored = json!({"bucket": "a", "credentials": {"access_key_id": "AK", "secret_access_key": "old"}});
        let mut edited = json!({"bucket": "b", "credentials": {"access_key_id": "AK", "secret_access_key": MASK}});
        keep_unchanged_secrets(&mut edited, &stored, &paths);
        assert_eq!(edited["credentials"]["secret_access_key"], "old");
        assert_eq!(edited["bucket"], "b");
    }

    #[test]
    fn secret_values_are_found_and_redacted_longest_first() {
        let data = json!({"bucket": "taxi", "credentials": {"key": "AKIA", "secret": "s3cr3t-s3cr3t-long", "token": "s3cr3t"}});
        let paths = vec![
            vec!["credentials".to_string(), "secret".to_string()],
            vec!["credentials".to_string(), "token".to_string()],
            vec!["missing".to_string()],
        ];
        let found = secret_values(&data, &paths);
        assert_eq!(found, ["s3cr3t-s3cr3t-long", "s3cr3t"]);
        assert_eq!(redact("got s3cr3t-s3cr3t-long and s3cr3t", &found), "got ******** and ********");
        assert_eq!(redact("nothing here", &found), "nothing here");
    }
}
