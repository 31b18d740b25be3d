//! Hostile rule text: every input must give rules or error values, never a
//! panic, a hang or unbounded memory.

use shardwatch_rules::{RuleSet, RuleSource};

fn compile(text: &str) -> usize {
    let source = RuleSource {
        origin: "hostile".to_owned(),
        text: text.to_owned(),
    };
    let (rules, errors) = RuleSet::compile_lenient(&[source]);
    for error in &errors {
        assert!(!error.to_string().is_empty());
    }
    rules.detection_count() + rules.correlation_count() + errors.len()
}

#[test]
fn malformed_documents_are_errors() {
    let deep_flow = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_condition = format!(
        "title: t\ndetection:\n  sel:\n    a: 1\n  condition: {}sel{}\n",
        "(".repeat(5000),
        ")".repeat(5000)
    );
    let laughs = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\ni: [*h, *h, *h, *h, *h, *h, *h, *h, *h]\n";
    let cases: Vec<String> = vec![
        String::new(),
        "---\n---\n".to_owned(),
        "\u{0}\u{1}\u{2}".to_owned(),
        ": : :".to_owned(),
        "title: [1, 2]\ndetection: {}".to_owned(),
        "title: t\ndetection: 5".to_owned(),
        "title: t\ndetection:\n  condition: x".to_owned(),
        "title: t\ndetection:\n  sel: {}\n  condition: sel".to_owned(),
        "title: t\ndetection:\n  sel: []\n  condition: sel".to_owned(),
        "title: t\ndetection:\n  sel:\n    a: [[1]]\n  condition: sel".to_owned(),
        "title: t\ndetection:\n  sel:\n    a|exists: maybe\n  condition: sel".to_owned(),
        "title: t\ndetection:\n  sel:\n    a|re|contains: x\n  condition: sel".to_owned(),
        "title: t\ndetection:\n  sel:\n    '|': x\n  condition: sel".to_owned(),
        "title: t\ndetection:\n  sel:\n    a: !tag x\n  condition: sel".to_owned(),
        "title: t\ncorrelation: 5".to_owned(),
        "title: t\ncorrelation:\n  type: event_count\n  rules: []\n  timespan: 1m\n  condition: {gte: 1}".to_owned(),
        "title: t\ncorrelation:\n  type: event_count\n  rules: [x]\n  timespan: 99999999999999999d\n  condition: {gte: 1}".to_owned(),
        "title: t\ncorrelation:\n  type: event_count\n  rules: [x]\n  timespan: 1m\n  condition: {gt: 18446744073709551615}".to_owned(),
        "title: t\ncorrelation:\n  type: event_count\n  rules: [x]\n  timespan: 1m\n  condition: {gte: 5, lt: 3}".to_owned(),
        "title: t\ncorrelation:\n  type: event_count\n  rules: [x]\n  timespan: 1m\n  condition: {gte: -1}".to_owned(),
        "title: t\ncorrelation:\n  type: event_count\n  rules: [x]\n  timespan: 1m\n  condition: {lt: 0}".to_owned(),
        "title: t\ncorrelation:\n  type: event_count\n  rules: [x]\n  timespan: 1m\n  condition: {gte: 0}".to_owned(),
        "title: t\ncorrelation:\n  type: event_count\n  rules: [x]\n  timespan: 1m\n  condition: {neq: 3}".to_owned(),
        "title: t\ncorrelation:\n  type: event_count\n  rules: [x]\n  timespan: 1m\n  condition: {gte: 100001}".to_owned(),
        "title: t\ncorrelation:\n  type: event_count\n  rules: [x]\n  timespan: \u{e9}\n  condition: {gte: 1}".to_owned(),
        "title: t\ncorrelation:\n  type: temporal\n  rules: [a, b]\n  timespan: 1m\n  aliases: 5".to_owned(),
        "title: t\ncorrelation:\n  type: temporal\n  rules: [a]\n  timespan: 1m\n  aliases: {x: {nope: y}}".to_owned(),
        "title: t\ncorrelation:\n  type: value_count\n  rules: [a]\n  timespan: 1m\n  condition: {gte: 2}".to_owned(),
        "title: t\ncorrelation:\n  type: value_count\n  rules: [a]\n  timespan: 1m\n  condition: {field: [a, b], gte: 2}".to_owned(),
        "title: t\ncorrelation:\n  type: temporal\n  rules: [a, b]\n  timespan: 1m\n  condition: {gte: 3}".to_owned(),
        "title: t\ncorrelation:\n  type: temporal_ordered\n  rules: [a, b]\n  timespan: 1m\n  condition: {gte: 1}".to_owned(),
        "title: t\ndetection:\n  sel:\n    a|expand: '%x%%y%%z%'\n  condition: sel".to_owned(),
        "title: t\ndetection:\n  sel:\n    a|gt: abc\n  condition: sel".to_owned(),
        "title: t\ndetection:\n  sel:\n    a|hour|re: x\n  condition: sel".to_owned(),
        "title: t\ndetection:\n  sel:\n    a|neq: null\n  condition: sel".to_owned(),
        "title: t\ndetection:\n  sel:\n    a|base64|base64offset|contains: x\n  condition: sel".to_owned(),
        "title: t\nfilter: 5".to_owned(),
        "title: t\nfilter:\n  rules: []\n  sel: {a: 1}\n  condition: sel".to_owned(),
        "title: t\nfilter:\n  rules: [x]\n  condition: sel".to_owned(),
        "title: t\nlogsource: {product: [a]}\ndetection:\n  sel: {a: 1}\n  condition: sel".to_owned(),
        deep_flow,
        deep_condition,
        laughs.to_owned(),
    ];
    for case in &cases {
        assert!(
            compile(case) > 0 || case.trim_matches(['-', '\n']).is_empty(),
            "{case:.80}"
        );
    }
}

#[test]
fn a_correlation_cannot_refer_to_itself() {
    let text = "title: c\nid: c\ncorrelation:\n  type: event_count\n  rules: [c]\n  timespan: 1m\n  condition: {gte: 2}\n";
    let source = RuleSource {
        origin: "self".to_owned(),
        text: text.to_owned(),
    };
    let (rules, errors) = RuleSet::compile_lenient(&[source]);
    assert_eq!(rules.correlation_count(), 0);
    assert_eq!(errors.len(), 1);
}
