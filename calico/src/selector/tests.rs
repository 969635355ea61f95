use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{ErrorKind, MAX_DEPTH, Selector};

/// The labels most match cases run against.
fn labels() -> BTreeMap<String, String> {
    [
        ("app", "web"),
        ("tier", "frontend"),
        ("projectcalico.org/namespace", "prod"),
        ("app.kubernetes.io/name", "nginx"),
        ("under_score", "u"),
        ("a-b", "c"),
        ("env", ""),
        ("quote", "it's"),
        ("dq", "say \"hi\""),
        ("in", "k"),
        ("has", "h"),
        ("not", "n"),
        ("contains", "c"),
        ("uni", "wéb"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// (selector, global, expected match against `labels()`).
const MATCH_CASES: &[(&str, bool, bool)] = &[
    // all(), empty, global()
    ("", false, true),
    ("  \t ", false, true),
    ("all()", false, true),
    ("all( )", false, true),
    ("global()", false, false),
    ("global()", true, true),
    ("global() && has(app)", true, true),
    ("global() || has(app)", false, true),
    ("!global()", false, true),
    // ==
    ("app == 'web'", false, true),
    ("app == \"web\"", false, true),
    ("app=='web'", false, true),
    ("app == 'db'", false, false),
    ("app == 'WEB'", false, false),
    ("missing == 'web'", false, false),
    ("env == ''", false, true),
    ("uni == 'wéb'", false, true),
    // !=
    ("app != 'db'", false, true),
    ("app != 'web'", false, false),
    ("app!='web'", false, false),
    ("missing != 'x'", false, true),
    ("env != ''", false, false),
    // in / not in
    ("app in {'web', 'db'}", false, true),
    ("app in {\"db\",'web'}", false, true),
    ("app in {'db'}", false, false),
    ("app in{'web'}", false, true),
    ("app in {'web',}", false, true),
    ("missing in {'a'}", false, false),
    ("app in {}", false, false),
    ("missing in {}", false, false),
    ("env in {''}", false, true),
    ("app not in {'db'}", false, true),
    ("app not in {'web', 'db'}", false, false),
    ("missing not in {'a'}", false, true),
    ("app not in {}", false, true),
    ("missing not in {}", false, true),
    ("app notin {'db'}", false, true),
    ("app not   in {'db'}", false, true),
    // has / !has
    ("has(app)", false, true),
    ("has( app )", false, true),
    ("has(missing)", false, false),
    ("!has(missing)", false, true),
    ("!has(app)", false, false),
    ("! has(app)", false, false),
    ("has(env)", false, true),
    // starts with / ends with / contains
    ("app starts with 'we'", false, true),
    ("app starts with 'eb'", false, false),
    ("app starts with ''", false, true),
    ("missing starts with ''", false, false),
    ("app startswith 'w'", false, true),
    ("app starts  with 'w'", false, true),
    ("app ends with 'eb'", false, true),
    ("app ends with 'we'", false, false),
    ("app endswith 'b'", false, true),
    ("missing ends with ''", false, false),
    ("app contains 'e'", false, true),
    ("app contains 'x'", false, false),
    ("app contains 'web'", false, true),
    ("app contains ''", false, true),
    ("missing contains ''", false, false),
    ("missing != 'x' && !has(missing)", false, true),
    // precedence: ! > && > ||
    ("has(app) || has(x) && has(y)", false, true),
    ("has(x) && has(y) || has(app)", false, true),
    ("app == 'db' && tier == 'frontend' || has(app)", false, true),
    ("!has(app) || has(tier)", false, true),
    ("!has(app) && has(tier)", false, false),
    ("!app == 'web'", false, false),
    ("!app == 'db'", false, true),
    ("!app == 'db' && has(x)", false, false),
    ("has(x) || !has(y) && has(app)", false, true),
    // negation and parentheses
    ("!(has(app) && has(missing))", false, true),
    ("!(has(app) || has(missing))", false, false),
    ("!!has(app)", false, true),
    ("!!!has(app)", false, false),
    ("!(!has(app))", false, true),
    ("(has(x) || has(app)) && has(tier)", false, true),
    ("has(x) || (has(app) && has(nope))", false, false),
    ("((has(app)))", false, true),
    ("(has(app) && (has(tier) && (app == 'web')))", false, true),
    ("(has(app) && has(tier)) && has(nope)", false, false),
    // label key characters
    ("projectcalico.org/namespace == 'prod'", false, true),
    ("app.kubernetes.io/name in {'nginx', 'apache'}", false, true),
    ("has(projectcalico.org/namespace)", false, true),
    ("under_score == 'u'", false, true),
    ("a-b == 'c'", false, true),
    ("has(a-b) && has(under_score)", false, true),
    // quotes
    ("quote == \"it's\"", false, true),
    ("quote contains \"'\"", false, true),
    ("dq == 'say \"hi\"'", false, true),
    ("dq ends with '\"'", false, true),
    ("app == ' web'", false, false),
    // words that are keywords elsewhere, used as label keys
    ("in == 'k'", false, true),
    ("has == 'h'", false, true),
    ("not not in {'x'}", false, true),
    ("contains contains 'c'", false, true),
    ("has(in) && has(has)", false, true),
    // whitespace
    ("\thas(app)\t&&\thas(tier) ", false, true),
    ("app=='web'&&tier!='x'||has(z)", false, true),
];

#[test]
fn selector_match_table() {
    let labels = labels();
    for &(text, global, want) in MATCH_CASES {
        let sel: Selector = text
            .parse()
            .unwrap_or_else(|e| panic!("{text:?} did not parse: {e}"));
        assert_eq!(
            sel.matches(&labels, global),
            want,
            "{text:?} (global={global}) parsed as {sel:?}"
        );
    }
}

#[test]
fn selector_round_trip_of_every_valid_case() {
    let labels = labels();
    for &(text, global, _) in MATCH_CASES {
        let sel = Selector::parse(text).unwrap();
        let printed = sel.to_string();
        let again = Selector::parse(&printed)
            .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?} which fails: {e}"));
        assert_eq!(again, sel, "{text:?} printed as {printed:?}");
        assert_eq!(again.to_string(), printed, "printing is not stable");
        assert_eq!(again.matches(&labels, global), sel.matches(&labels, global));
    }
}

#[test]
fn selector_precedence_and_structure() {
    let has = |k: &str| Selector::Has(k.to_string());
    let eq = |k: &str, v: &str| Selector::Eq(k.to_string(), v.to_string());
    let not = |s: Selector| Selector::Not(Box::new(s));
    let cases: Vec<(&str, Selector)> = vec![
        ("", Selector::All),
        ("all()", Selector::All),
        ("global()", Selector::Global),
        (
            "has(a) || has(b) && has(c)",
            Selector::Or(vec![has("a"), Selector::And(vec![has("b"), has("c")])]),
        ),
        (
            "has(a) && has(b) || has(c)",
            Selector::Or(vec![Selector::And(vec![has("a"), has("b")]), has("c")]),
        ),
        (
            "has(a) && has(b) && has(c)",
            Selector::And(vec![has("a"), has("b"), has("c")]),
        ),
        (
            "(has(a) && has(b)) && has(c)",
            Selector::And(vec![Selector::And(vec![has("a"), has("b")]), has("c")]),
        ),
        (
            "!has(a) && has(b)",
            Selector::And(vec![not(has("a")), has("b")]),
        ),
        (
            "!(has(a) && has(b))",
            not(Selector::And(vec![has("a"), has("b")])),
        ),
        ("!a == 'x'", not(eq("a", "x"))),
        ("!!has(a)", not(not(has("a")))),
        ("(((has(a))))", has("a")),
        (
            "a in {'y', 'x', 'y'}",
            Selector::In(
                "a".into(),
                BTreeSet::from(["x".to_string(), "y".to_string()]),
            ),
        ),
        ("a not in {}", Selector::NotIn("a".into(), BTreeSet::new())),
        (
            "a starts with 'p' || a ends with 's' || a contains 'c'",
            Selector::Or(vec![
                Selector::StartsWith("a".into(), "p".into()),
                Selector::EndsWith("a".into(), "s".into()),
                Selector::Contains("a".into(), "c".into()),
            ]),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(Selector::parse(text).unwrap(), want, "{text:?}");
    }
}

#[test]
fn selector_canonical_display() {
    let cases = [
        ("", "all()"),
        ("global( )", "global()"),
        ("has( app )", "has(app)"),
        ("app=='web'", "app == \"web\""),
        ("app != 'web'", "app != \"web\""),
        ("app == 'say \"hi\"'", "app == 'say \"hi\"'"),
        ("a in {'b', 'a', 'b'}", "a in {\"a\", \"b\"}"),
        ("a in {}", "a in {}"),
        ("a notin {'x',}", "a not in {\"x\"}"),
        ("a startswith 'x'", "a starts with \"x\""),
        ("a ends   with 'x'", "a ends with \"x\""),
        ("a contains 'x'", "a contains \"x\""),
        ("a == 'x' && b == 'y'", "(a == \"x\" && b == \"y\")"),
        (
            "has(a) || has(b) && has(c)",
            "(has(a) || (has(b) && has(c)))",
        ),
        ("!(has(a) || has(b))", "!(has(a) || has(b))"),
        ("!!has(a)", "!!has(a)"),
        ("((has(a)))", "has(a)"),
        (
            "(has(a) && has(b)) && has(c)",
            "((has(a) && has(b)) && has(c))",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(Selector::parse(text).unwrap().to_string(), want, "{text:?}");
    }
}

#[test]
fn selector_errors() {
    let op = "an operator (==, !=, in, not in, starts with, ends with, contains)";
    let start = "a label, '(', '!', has(), all() or global()";
    let cases: Vec<(&str, String)> = vec![
        ("has(app", "expected ')', found end of input at 7".into()),
        ("has()", "expected a label, found ')' at 4".into()),
        (
            "has('app')",
            "expected a label, found string \"app\" at 4".into(),
        ),
        ("has(app b)", "expected ')', found 'b' at 8".into()),
        ("all(x)", "expected ')', found 'x' at 4".into()),
        (
            "foo(bar)",
            "unknown function 'foo' (expected has, all or global) at 0".into(),
        ),
        (
            "has(a) && any()",
            "unknown function 'any' (expected has, all or global) at 10".into(),
        ),
        (
            "has (app)",
            "no space allowed between 'has' and '(' at 3".into(),
        ),
        ("app == 'web", "unterminated string at 7".into()),
        ("app == \"web'", "unterminated string at 7".into()),
        ("app = 'web'", "expected '==', found '=' at 4".into()),
        ("has(a) & has(b)", "expected '&&', found '&' at 7".into()),
        ("has(a) | has(b)", "expected '||', found '|' at 7".into()),
        (
            "app == web",
            "expected a quoted string, found 'web' at 7".into(),
        ),
        ("app", format!("expected {op}, found end of input at 3")),
        ("app web", format!("expected {op}, found 'web' at 4")),
        ("app > 'x'", "unexpected character '>' at 4".into()),
        (
            "has(a) has(b)",
            "expected '&&', '||' or end of input, found 'has' at 7".into(),
        ),
        (
            "(has(a)",
            "expected '&&', '||' or ')', found end of input at 7".into(),
        ),
        (
            "has(a))",
            "expected '&&', '||' or end of input, found ')' at 6".into(),
        ),
        ("app in 'a'", "expected '{', found string \"a\" at 7".into()),
        (
            "app in {'a' 'b'}",
            "expected ',' or '}', found string \"b\" at 12".into(),
        ),
        (
            "app in {,}",
            "expected a quoted string or '}', found ',' at 8".into(),
        ),
        (
            "app in {'a'",
            "expected ',' or '}', found end of input at 11".into(),
        ),
        (
            "app not 'a'",
            "expected 'in' after 'not', found string \"a\" at 8".into(),
        ),
        (
            "app starts 'a'",
            "expected 'with' after 'starts', found string \"a\" at 11".into(),
        ),
        (
            "app ends on 'a'",
            "expected 'with' after 'ends', found 'on' at 9".into(),
        ),
        ("&& has(a)", format!("expected {start}, found '&&' at 0")),
        (
            "has(a) &&",
            format!("expected {start}, found end of input at 9"),
        ),
        (
            "has(a) || ",
            format!("expected {start}, found end of input at 10"),
        ),
        ("!", format!("expected {start}, found end of input at 1")),
        ("()", format!("expected {start}, found ')' at 1")),
        (
            "'x' == app",
            format!("expected {start}, found string \"x\" at 0"),
        ),
        ("has(a)\nhas(b)", "unexpected character '\\n' at 6".into()),
        ("app == 'x' && é", "unexpected character 'é' at 14".into()),
    ];
    for (text, want) in cases {
        let err = Selector::parse(text).expect_err(text);
        assert_eq!(err.to_string(), format!("{want} in {text:?}"), "{text:?}");
        assert_eq!(err.input, text);
        assert!(err.pos <= text.len());
    }
}

#[test]
fn selector_nesting_limit() {
    let ok = format!("{}all(){}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert_eq!(Selector::parse(&ok).unwrap(), Selector::All);

    let deep = format!("{}all(){}", "(".repeat(500), ")".repeat(500));
    let err = Selector::parse(&deep).unwrap_err();
    assert_eq!(err.kind, ErrorKind::TooDeep);
    assert_eq!(err.pos, MAX_DEPTH);

    let bangs = format!("{}has(a)", "!".repeat(10_000));
    let err = Selector::parse(&bangs).unwrap_err();
    assert_eq!(err.kind, ErrorKind::TooDeep);

    let mixed = "!(".repeat(MAX_DEPTH / 2) + "has(a)" + &")".repeat(MAX_DEPTH / 2);
    assert!(Selector::parse(&mixed).is_ok());
}

#[test]
fn selector_matches_hash_map_and_references() {
    let mut labels = HashMap::new();
    labels.insert("app".to_string(), "web".to_string());
    let sel = Selector::parse("app == 'web' && !has(x)").unwrap();
    assert!(sel.matches(&labels, false));
    let by_ref: &HashMap<String, String> = &labels;
    assert!(sel.matches(&by_ref, false));
    assert!(Selector::default().matches(&BTreeMap::new(), false));
}

#[test]
fn selector_degenerate_groups_print_equivalently() {
    let empty = BTreeMap::new();
    for sel in [Selector::And(vec![]), Selector::Or(vec![])] {
        let again = Selector::parse(&sel.to_string()).unwrap();
        assert_eq!(again.matches(&empty, false), sel.matches(&empty, false));
    }
    let one = Selector::And(vec![Selector::Has("a".into())]);
    assert_eq!(
        Selector::parse(&one.to_string()).unwrap(),
        Selector::Has("a".into())
    );
}

/// A small deterministic generator (64-bit LCG, Knuth's constants).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const KEYS: &[&str] = &[
    "app",
    "tier",
    "projectcalico.org/namespace",
    "app.kubernetes.io/name",
    "a-b_c.d/e",
    "in",
    "not",
    "has",
    "all",
    "contains",
    "starts",
    "with",
    "0",
    "-",
];
const VALUES: &[&str] = &[
    "",
    "web",
    "it's",
    "say \"hi\"",
    "a b",
    "{x}",
    "(",
    "&& ||",
    "has(a)",
    "é",
    "x,y",
    "\t",
    "!=",
];

fn random_set(rng: &mut Lcg) -> BTreeSet<String> {
    (0..rng.below(4))
        .map(|_| rng.pick(VALUES).to_string())
        .collect()
}

fn random_selector(rng: &mut Lcg, depth: usize) -> Selector {
    let key = |rng: &mut Lcg| rng.pick(KEYS).to_string();
    let val = |rng: &mut Lcg| rng.pick(VALUES).to_string();
    if depth > 0 && rng.below(3) > 0 {
        return match rng.below(3) {
            0 => Selector::Not(Box::new(random_selector(rng, depth - 1))),
            1 => Selector::And(
                (0..2 + rng.below(3))
                    .map(|_| random_selector(rng, depth - 1))
                    .collect(),
            ),
            _ => Selector::Or(
                (0..2 + rng.below(3))
                    .map(|_| random_selector(rng, depth - 1))
                    .collect(),
            ),
        };
    }
    match rng.below(10) {
        0 => Selector::All,
        1 => Selector::Global,
        2 => Selector::Has(key(rng)),
        3 => Selector::Eq(key(rng), val(rng)),
        4 => Selector::Ne(key(rng), val(rng)),
        5 => Selector::In(key(rng), random_set(rng)),
        6 => Selector::NotIn(key(rng), random_set(rng)),
        7 => Selector::StartsWith(key(rng), val(rng)),
        8 => Selector::EndsWith(key(rng), val(rng)),
        _ => Selector::Contains(key(rng), val(rng)),
    }
}

fn random_labels(rng: &mut Lcg) -> BTreeMap<String, String> {
    (0..rng.below(6))
        .map(|_| (rng.pick(KEYS).to_string(), rng.pick(VALUES).to_string()))
        .collect()
}

#[test]
fn selector_random_round_trip() {
    let mut rng = Lcg(0x5e1e_c70a);
    for i in 0..3000 {
        let sel = random_selector(&mut rng, 5);
        let printed = sel.to_string();
        let parsed = Selector::parse(&printed)
            .unwrap_or_else(|e| panic!("case {i}: {sel:?} printed as {printed:?}: {e}"));
        assert_eq!(parsed, sel, "case {i}: printed as {printed:?}");
        assert_eq!(parsed.to_string(), printed);
        for _ in 0..4 {
            let labels = random_labels(&mut rng);
            let global = rng.below(2) == 0;
            assert_eq!(
                parsed.matches(&labels, global),
                sel.matches(&labels, global)
            );
        }
        // Every prefix of valid text parses or fails cleanly, with an in-bounds position.
        let cut = rng.below(printed.len() + 1);
        if let Some(prefix) = printed.get(..cut)
            && let Err(e) = Selector::parse(prefix)
        {
            assert!(e.pos <= prefix.len(), "{e}");
        }
    }
}

/// Checks evaluation against a hand-written truth table over label presence and value.
#[test]
fn selector_missing_label_semantics() {
    let absent = BTreeMap::new();
    let other: BTreeMap<String, String> = [("k".to_string(), "other".to_string())].into();
    let equal: BTreeMap<String, String> = [("k".to_string(), "v".to_string())].into();
    // (selector, absent, present-with-other-value, present-with-"v")
    let cases = [
        ("k == 'v'", false, false, true),
        ("k != 'v'", true, true, false),
        ("k in {'v'}", false, false, true),
        ("k not in {'v'}", true, true, false),
        ("has(k)", false, true, true),
        ("!has(k)", true, false, false),
        ("k starts with 'v'", false, false, true),
        ("k ends with 'v'", false, false, true),
        ("k contains 'v'", false, false, true),
        ("!(k == 'v')", true, true, false),
    ];
    for (text, a, o, e) in cases {
        let sel = Selector::parse(text).unwrap();
        assert_eq!(sel.matches(&absent, false), a, "{text} absent");
        assert_eq!(sel.matches(&other, false), o, "{text} other");
        assert_eq!(sel.matches(&equal, false), e, "{text} equal");
    }
}
