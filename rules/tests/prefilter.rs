//! The prefilter never changes a verdict: `evaluate` (log source groups,
//! direct needle tests, automata) equals `evaluate_all` (every rule's full
//! detection) on values that put each needle at, beside and across the
//! edges its anchor cares about, in mixed case, for a field with few
//! needles (tested directly) and one with many (an automaton).

use shardwatch_rules::{Event, RuleSet, RuleSource, Scratch};

fn rule(id: usize, logsource: &str, detection: &str) -> RuleSource {
    RuleSource {
        origin: format!("rule{id}.yml"),
        text: format!(
            "title: r{id}\nid: 00000000-0000-0000-0000-{id:012}\n{logsource}\ndetection:\n{detection}\n"
        ),
    }
}

/// Substring needles that overlap and are prefixes of each other.
const OVERLAPPING_NEEDLES: [&str; 10] = [
    "netsh",
    "netsh int",
    "sh interface",
    "netstat",
    "stat -an",
    "tstat",
    "-an",
    "abcab",
    "bcabc",
    "cabca",
];

fn rules() -> Vec<RuleSource> {
    let process = "logsource:\n  product: windows\n  category: process_creation";
    let sshd = "logsource:\n  product: linux\n  service: sshd";
    let none = "";
    let mut out = vec![
        rule(1, process, "  sel:\n    Image|endswith: '\\whoami.exe'\n  condition: sel"),
        rule(2, process, "  sel:\n    Image|startswith: 'C:\\Tools\\'\n  condition: sel"),
        rule(3, process, "  sel:\n    OriginalFileName: 'whoami.exe'\n  condition: sel"),
        rule(4, process, "  sel:\n    CommandLine|contains: '/priv'\n  condition: sel"),
        rule(5, process, "  sel:\n    CommandLine|re: 'net\\s+user'\n  condition: sel"),
        rule(6, process, "  sel:\n    CommandLine|contains|all:\n      - 'dump'\n      - 'lsass'\n  condition: sel"),
        rule(7, sshd, "  keywords:\n    - 'Failed password'\n  condition: keywords"),
        rule(8, sshd, "  sel:\n    user.name|endswith: 'admin'\n  condition: sel"),
        rule(9, none, "  sel:\n    host.name: 'bastion'\n  condition: sel"),
        rule(10, process, "  sel:\n    Image|endswith: '.exe'\n  filter:\n    Image|startswith: 'C:\\Windows\\'\n  condition: sel and not filter"),
    ];
    // Twelve needles on ParentImage: more than a field tests directly.
    for (i, name) in [
        "winword", "excel", "powerpnt", "outlook", "msaccess", "mspub", "visio", "onenote",
        "wordpad", "mshta", "wscript", "cscript",
    ]
    .iter()
    .enumerate()
    {
        out.push(rule(
            20 + i,
            process,
            &format!("  sel:\n    ParentImage|endswith: '\\{name}.exe'\n  condition: sel"),
        ));
    }
    // Ten more on CommandLine, overlapping and prefixes of each other, so
    // that field searches with the packed searcher and its prefix
    // closure (and falls back to the automaton after many hits).
    for (i, needle) in OVERLAPPING_NEEDLES.iter().enumerate() {
        out.push(rule(
            40 + i,
            process,
            &format!("  sel:\n    CommandLine|contains: '{needle}'\n  condition: sel"),
        ));
    }
    // Ten whole-value and prefix needles on OriginalFileName, prefixes of
    // each other: an anchored automaton.
    for (i, (modifier, value)) in [
        ("", "cmd.exe"),
        ("", "cmd.exe.mui"),
        ("", "net.exe"),
        ("", "net1.exe"),
        ("|startswith", "net"),
        ("|startswith", "netsh"),
        ("", "psexec.c"),
        ("|startswith", "psexe"),
        ("", "rundll32.exe"),
        ("|startswith", "rundll"),
    ]
    .iter()
    .enumerate()
    {
        out.push(rule(
            60 + i,
            process,
            &format!("  sel:\n    OriginalFileName{modifier}: '{value}'\n  condition: sel"),
        ));
    }
    out
}

#[test]
fn the_prefilter_agrees_with_evaluating_every_rule() {
    let (rules, errors) = RuleSet::compile_lenient(&rules());
    assert!(errors.is_empty(), "{errors:?}");
    assert!(rules.logsource_group_count() >= 3);
    let process = [
        ("Channel", "Microsoft-Windows-Sysmon/Operational"),
        ("EventID", "1"),
    ];
    let values = [
        "whoami.exe",
        "\\whoami.exe",
        "C:\\Windows\\System32\\WHOAMI.EXE",
        "C:\\Windows\\System32\\whoami.exe ",
        "C:\\Tools\\x.exe",
        "c:\\tools\\",
        "C:\\Tool",
        "whoami /PRIV",
        "cmd /c net   user bob",
        "NET USER",
        "procdump -ma lsass.exe out.DMP",
        "lsass",
        "C:\\Program Files\\Microsoft Office\\WINWORD.EXE",
        "C:\\x\\cscript.exe",
        "C:\\x\\cscript.ex",
        "NETSH INTERFACE show",
        "netstat -an",
        "NetStat",
        "CMD.EXE",
        "cmd.exe.mui",
        "cmd.ex",
        "NET.exe",
        "netsh.exe",
        "PsExec.c",
        "psexec.com",
        "rundll32.exe ",
        "xx-an",
        "abcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabc -an",
        "",
    ];
    let fields = ["Image", "OriginalFileName", "CommandLine", "ParentImage"];
    let mut scratch = Scratch::new();
    let (mut fast, mut full) = (Vec::new(), Vec::new());
    let mut matched = 0;
    let mut check = |fields: &[(&str, &[u8])], message: &[u8]| {
        let event = Event {
            time_ns: 1,
            fields,
            message,
            raw: message,
        };
        rules.evaluate(&event, &mut scratch, &mut fast);
        rules.evaluate_all(&event, &mut scratch, &mut full);
        assert_eq!(fast, full, "{fields:?} {message:?}");
        matched += fast.len();
    };
    for field in fields {
        for value in values {
            let mut event: Vec<(&str, &[u8])> =
                process.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
            event.push((field, value.as_bytes()));
            check(&event, b"");
            // The same value outside the log source: nothing may match.
            check(&[(field, value.as_bytes())], b"");
        }
    }
    for (user, message) in [
        ("Admin", "Failed password for Admin"),
        ("root", "FAILED PASSWORD for root"),
        ("administrator", "Accepted password"),
    ] {
        check(
            &[("process.name", b"sshd"), ("user.name", user.as_bytes())],
            message.as_bytes(),
        );
        check(
            &[("process.name", b"sudo"), ("user.name", user.as_bytes())],
            message.as_bytes(),
        );
        check(&[("host.name", b"BASTION")], message.as_bytes());
    }
    assert!(
        matched >= 20,
        "the values were meant to match often: {matched}"
    );
}

/// A field with more substring needles than one packed searcher takes:
/// the restarted leftmost-longest DFA and its prefix closure must find
/// every needle the overlapping automaton would, including needles that
/// overlap, nest and share prefixes, and past the restart limit. With 300
/// needles each is searched by its first 8 bytes; with 180, whole.
#[test]
fn a_dfa_over_many_needles_agrees_with_evaluating_every_rule() {
    many_needles_agree(300);
    many_needles_agree(180);
}

fn many_needles_agree(tokens: usize) {
    let process = "logsource:\n  product: windows\n  category: process_creation";
    let mut needles: Vec<String> = (0..tokens).map(|i| format!("tok{i:03}x")).collect();
    needles.extend(
        OVERLAPPING_NEEDLES
            .iter()
            .map(|needle| (*needle).to_owned()),
    );
    needles.extend(
        [
            "tok001",
            "ok00",
            // Longer than the searched prefix, sharing it, and one a
            // prefix of another past it.
            "sqbfafgaiaaoae4azqb3",
            "sqbfafgaiaaoae4azqb4",
            "sqbfafgaiaaoae4",
            "sqbfafgaxx",
        ]
        .iter()
        .map(|needle| (*needle).to_owned()),
    );
    let sources: Vec<RuleSource> = needles
        .iter()
        .enumerate()
        .map(|(i, needle)| {
            rule(
                1000 + i,
                process,
                &format!("  sel:\n    CommandLine|contains: '{needle}'\n  condition: sel"),
            )
        })
        .collect();
    let (rules, errors) = RuleSet::compile_lenient(&sources);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(rules.prefiltered_count(), needles.len());
    let values = [
        "tok001x",
        "TOK001X tok299x",
        "xtok00tok001tok002x",
        "NETSH INTERFACE show",
        "netstat -an",
        "abcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabc -an",
        "tok000xtok001xtok002xtok003xtok004xtok005xtok006xtok007xtok008xtok009xtok010xtok011xtok012xtok013xtok014xtok015xtok016xtok017xtok018x",
        "ok00 tok1",
        "-enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAKQA=",
        "-enc SQBFAFgAIAAoAE4AZQB4",
        "-enc SQBFAFgA only the prefix",
        "sqbfafgaxx sqbfafgaiaaoae4azqb",
        "",
    ];
    let matched = command_lines_agree(&rules, &values);
    assert!(
        matched >= 40,
        "the values were meant to match often: {matched}"
    );
}

/// Substring needles with bytes past ASCII (emoji, accented words) are
/// searched apart from the ASCII ones, and only in values that have such
/// a byte: verdicts must not change for ASCII values, values with the
/// needles, values with other non-ASCII bytes, or needles that begin with
/// ASCII and end past it.
#[test]
fn needles_past_ascii_agree_with_evaluating_every_rule() {
    let process = "logsource:\n  product: windows\n  category: process_creation";
    let wide = [
        "🔥",
        "🐍",
        "#\u{fe0f}\u{20e3}",
        "1\u{fe0f}\u{20e3}",
        "café",
        "naïve",
        "über",
        "straße",
    ];
    let ascii = ["whoami", "netsh", "-enc", "lsass"];
    let sources: Vec<RuleSource> = wide
        .iter()
        .chain(&ascii)
        .enumerate()
        .map(|(i, needle)| {
            rule(
                2000 + i,
                process,
                &format!("  sel:\n    CommandLine|contains: '{needle}'\n  condition: sel"),
            )
        })
        .collect();
    let (rules, errors) = RuleSet::compile_lenient(&sources);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(rules.prefiltered_count(), wide.len() + ascii.len());
    let values = [
        "whoami /priv",
        "WHOAMI 🔥",
        "echo 🔥🐍",
        "echo #\u{fe0f}\u{20e3} and 1",
        "echo # and 1\u{fe0f}",
        "CAFÉ au lait",
        "Café au lait",
        "a naïve netsh",
        "ÜBER über",
        "strasse straße",
        "emoji 😀 only",
        "é",
        "",
    ];
    let matched = command_lines_agree(&rules, &values);
    assert!(
        matched >= 10,
        "the values were meant to match often: {matched}"
    );
}

/// Evaluates a Sysmon process-creation event with each of `values` as its
/// `CommandLine`, with the prefilter and without; the verdicts must be
/// equal. Returns how many rules matched in all.
fn command_lines_agree(rules: &RuleSet, values: &[&str]) -> usize {
    let mut scratch = Scratch::new();
    let (mut fast, mut full) = (Vec::new(), Vec::new());
    let mut matched = 0;
    for value in values {
        let fields: [(&str, &[u8]); 3] = [
            ("Channel", b"Microsoft-Windows-Sysmon/Operational"),
            ("EventID", b"1"),
            ("CommandLine", value.as_bytes()),
        ];
        let event = Event {
            time_ns: 1,
            fields: &fields,
            message: b"",
            raw: b"",
        };
        rules.evaluate(&event, &mut scratch, &mut fast);
        rules.evaluate_all(&event, &mut scratch, &mut full);
        assert_eq!(fast, full, "{value:?}");
        matched += fast.len();
    }
    matched
}

/// The header gate (`may_match_header`) never rules out a line some rule
/// matches: keyword rules with an open log source are gated by their
/// keywords in the message (wildcards, anchors, `all`, mixed case,
/// `base64offset`, a negated selection), service rules by program name.
/// A keyword rule that can match without a literal (a regex keyword) or an
/// open rule on a payload field leaves no gate.
#[test]
fn the_message_gate_never_rules_out_a_line_a_rule_matches() {
    let linux = "logsource:\n    product: linux";
    let mut sources = vec![
        rule(
            1,
            linux,
            "    kw:\n        - 'cat /dev/null >*sh_history'\n        - 'History -c'\n    condition: kw",
        ),
        rule(
            2,
            "",
            "    a:\n        - 'new user'\n    b:\n        - 'UID=0,'\n        - 'GID=0,'\n    condition: a and b",
        ),
        rule(
            3,
            linux,
            "    kw:\n        '|all':\n            - 'bpf'\n            - 'write_user'\n    fp:\n        - 'benign'\n    condition: kw and not fp",
        ),
        rule(
            4,
            linux,
            "    kw:\n        '|base64offset|contains': 'evil.sh'\n    condition: kw",
        ),
        rule(
            5,
            "logsource:\n    product: linux\n    service: sshd",
            "    sel:\n        user.name: root\n    condition: sel",
        ),
    ];
    let (rules, errors) = RuleSet::compile_lenient(&sources);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        rules.header_gate_blocker().is_none(),
        "{:?}",
        rules.header_gate_blocker()
    );
    let messages = [
        "CAT /dev/null > ~/.bash_history",
        "cat /dev/null >/root/.zsh_history",
        "history -C",
        "xhistory -cx",
        "histor -c",
        "new user: name=x, UID=0, GID=5",
        "new user: name=x, UID=5, GID=5",
        "uid=0, new user",
        "BPF_PROBE_WRITE_USER",
        "bpf write_user benign",
        "bpf only",
        "ZXZpbC5zaA",
        "echo ZXZpbC5zaA== | base64 -d",
        "session opened for user root",
        "",
    ];
    let programs: [Option<&[u8]>; 3] = [Some(b"bash"), Some(b"sshd"), None];
    let mut scratch = Scratch::new();
    let mut matches = Vec::new();
    let (mut ruled_out, mut matched) = (0, 0);
    for message in messages {
        for program in programs {
            let header = [Some(&b"web-1"[..]), program, None, None];
            let mut fields: Vec<(&str, &[u8])> = vec![("host.name", b"web-1")];
            if let Some(program) = program {
                fields.push(("process.name", program));
            }
            fields.push(("user.name", b"root"));
            let event = Event {
                time_ns: 1,
                fields: &fields,
                message: message.as_bytes(),
                raw: message.as_bytes(),
            };
            rules.evaluate_all(&event, &mut scratch, &mut matches);
            let may = rules.may_match_header(
                &header,
                message.as_bytes(),
                message.as_bytes(),
                &mut scratch,
            );
            assert!(
                may || matches.is_empty(),
                "ruled out {program:?} {message:?}, which matches {matches:?}"
            );
            ruled_out += usize::from(!may);
            matched += usize::from(!matches.is_empty());
        }
    }
    // From bash: "histor -c", "bpf only", the session line and the
    // empty message (from sshd or no program, the sshd rule may match).
    assert_eq!(ruled_out, 4);
    assert!(matched >= 15, "{matched}");
    // Rules that could match a line without one of their literals in the
    // message leave no gate.
    for (id, detection) in [
        (6, "    kw:\n        '|re': '[0-9]+x'\n    condition: kw"),
        (7, "    sel:\n        user.name: bob\n    condition: sel"),
        (8, "    kw:\n        - 'ab'\n    condition: kw"),
        (9, "    fp:\n        - 'benign'\n    condition: not fp"),
    ] {
        sources.push(rule(id, linux, detection));
        let (rules, errors) = RuleSet::compile_lenient(&sources);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            rules.header_gate_blocker().map(|rule| rule.title.as_str()),
            Some(format!("r{id}").as_str())
        );
        sources.pop();
    }
}
