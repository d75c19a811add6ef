//! Readable run names (`brave-heron`) and run-name templates.

use serde_json::Value;

const ADJECTIVES: &[&str] = &[
    "agile",
    "amber",
    "ancient",
    "azure",
    "bold",
    "brave",
    "bright",
    "brisk",
    "calm",
    "clever",
    "cobalt",
    "cosmic",
    "crimson",
    "curious",
    "daring",
    "dapper",
    "eager",
    "electric",
    "elegant",
    "emerald",
    "fearless",
    "fierce",
    "gentle",
    "gilded",
    "glowing",
    "golden",
    "graceful",
    "hardy",
    "hidden",
    "humble",
    "icy",
    "jolly",
    "keen",
    "lively",
    "lucky",
    "lunar",
    "mellow",
    "merry",
    "mighty",
    "misty",
    "nimble",
    "noble",
    "olive",
    "patient",
    "placid",
    "polar",
    "proud",
    "quick",
    "quiet",
    "radiant",
    "rapid",
    "rustic",
    "sandy",
    "scarlet",
    "serene",
    "silent",
    "silver",
    "sleek",
    "smooth",
    "snowy",
    "solar",
    "spirited",
    "steady",
    "stormy",
    "sturdy",
    "sunny",
    "swift",
    "tidal",
    "tranquil",
    "vivid",
    "wandering",
    "warm",
    "wild",
    "wise",
    "witty",
    "zealous",
];

const ANIMALS: &[&str] = &[
    "albatross",
    "alpaca",
    "antelope",
    "badger",
    "beaver",
    "bison",
    "bobcat",
    "buffalo",
    "caribou",
    "cheetah",
    "condor",
    "cormorant",
    "coyote",
    "crane",
    "dolphin",
    "eagle",
    "egret",
    "elk",
    "falcon",
    "ferret",
    "finch",
    "fox",
    "gazelle",
    "gecko",
    "gull",
    "hare",
    "hawk",
    "heron",
    "ibis",
    "jackal",
    "jaguar",
    "kestrel",
    "kingfisher",
    "koala",
    "lemur",
    "leopard",
    "lynx",
    "magpie",
    "marmot",
    "marten",
    "mink",
    "moose",
    "narwhal",
    "newt",
    "ocelot",
    "octopus",
    "orca",
    "osprey",
    "otter",
    "owl",
    "panda",
    "pelican",
    "penguin",
    "petrel",
    "puffin",
    "quail",
    "raven",
    "salmon",
    "seal",
    "sparrow",
    "stork",
    "swan",
    "tapir",
    "tern",
    "tiger",
    "trout",
    "turtle",
    "walrus",
    "weasel",
    "wolf",
    "wombat",
    "wren",
    "yak",
    "zebra",
];

/// A readable name from a random 64-bit value (the caller owns randomness).
pub fn run_name(seed: u64) -> String {
    let a = ADJECTIVES[(seed % ADJECTIVES.len() as u64) as usize];
    let b = ANIMALS[((seed >> 32) % ANIMALS.len() as u64) as usize];
    format!("{a}-{b}")
}

/// Renders a run-name template such as `"{color}-{year}-{month:02}"` with the
/// run's parameters. Unknown placeholders are left as they are, so a typo is
/// visible in the name rather than silently dropped.
pub fn render_run_name(template: &str, params: &Value) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let spec = &after[..close];
        let (field, width) = match spec.split_once(':') {
            Some((f, w)) => (f, w.trim_start_matches('0').parse::<usize>().ok()),
            None => (spec, None),
        };
        match params.get(field) {
            Some(v) => {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                match width {
                    Some(w) => out.push_str(&format!("{text:0>w$}")),
                    None => out.push_str(&text),
                }
            }
            None => {
                out.push('{');
                out.push_str(spec);
                out.push('}');
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// A name that is one word (an automation's): not empty, no
/// white space (Unicode's). The API's document states it as
/// [`ONE_WORD_PATTERN`].
pub fn is_one_word(name: &str) -> bool {
    !name.is_empty() && !name.contains(char::is_whitespace)
}

/// [`is_one_word`] as a JSON Schema pattern (Unicode's white space listed:
/// regex dialects disagree on what `\s` is).
pub const ONE_WORD_PATTERN: &str = r"^[^\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_adjective_animal() {
        let n = run_name(0x0000_0013_0000_0005);
        assert_eq!(n, format!("{}-{}", ADJECTIVES[5], ANIMALS[0x13]));
        let distinct: std::collections::HashSet<_> =
            (0..1000u64).map(|i| run_name(i.wrapping_mul(0x9E37_79B9_7F4A_7C15))).collect();
        assert!(distinct.len() > 500, "{}", distinct.len());
    }

    #[test]
    fn templates_use_parameters() {
        let p = json!({"color": "yellow", "year": 2021, "month": 1});
        assert_eq!(render_run_name("{color}-{year}-{month:02}", &p), "yellow-2021-01");
        assert_eq!(render_run_name("load {colour}", &p), "load {colour}");
        assert_eq!(render_run_name("open {brace", &p), "open {brace");
    }
}
